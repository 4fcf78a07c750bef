import { Store } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { LazyStore } from '../../host/mqtt/lazy-store.ts';

type Packet = Parameters<Store['put']>[0];
const publish = (messageId: number): Packet => ({ cmd: 'publish', messageId, topic: `t/${messageId}`, payload: Buffer.from('x'), qos: 1, retain: false, dup: false });

/** Every packet a store's replay stream gives at connect, the way mqtt.js reads it (read(1) until 'end'). */
function replay(store: { createStream(): ReturnType<Store['createStream']> }): Promise<unknown[]> {
  const stream = store.createStream();
  const out: unknown[] = [];
  return new Promise((resolve) => {
    const pull = () => {
      let p;
      while ((p = stream.read(1)) !== null) out.push(p);
    };
    stream.on('readable', pull);
    stream.on('end', () => resolve(out));
  });
}

const answer = (call: (cb: (err?: Error, packet?: Packet) => void) => void) =>
  new Promise<{ err?: Error; packet?: Packet }>((resolve) => call((err, packet) => resolve({ err: err ?? undefined, packet })));

describe('LazyStore', () => {
  it("answers like mqtt.js's Store: put, get, del, missing packets, the replay in put order", async () => {
    const lazy = new LazyStore();
    const real = new Store();
    for (const id of [3, 1, 2]) {
      lazy.put(publish(id), () => {});
      real.put(publish(id), () => {});
    }
    expect(await replay(lazy)).toEqual(await replay(real));
    for (const store of [lazy, real]) {
      expect((await answer((cb) => store.get({ messageId: 1 }, cb))).packet?.messageId).toBe(1);
      expect((await answer((cb) => store.del({ messageId: 1 }, cb))).packet?.messageId).toBe(1);
      expect((await answer((cb) => store.get({ messageId: 1 }, cb))).err?.message).toBe('missing packet');
      expect((await answer((cb) => store.del({ messageId: 1 }, cb))).err?.message).toBe('missing packet');
    }
    expect(await replay(lazy)).toEqual(await replay(real));
  });

  it('holds no map while empty, and replays nothing then', async () => {
    const store = new LazyStore();
    expect(store.size).toBe(0);
    expect(await replay(store)).toEqual([]);
    store.put(publish(7), () => {});
    store.put(publish(8), () => {});
    expect(store.size).toBe(2);
    await answer((cb) => store.del({ messageId: 7 }, cb));
    await answer((cb) => store.del({ messageId: 8 }, cb));
    expect(store.size).toBe(0);
    expect((store as unknown as { packets: unknown }).packets).toBeNull();
    expect(await replay(store)).toEqual([]);
  });

  it('close() forgets what it held and calls back', async () => {
    const store = new LazyStore();
    store.put(publish(1), () => {});
    let closed = false;
    store.close(() => (closed = true));
    expect(closed).toBe(true);
    expect(store.size).toBe(0);
    expect((await answer((cb) => store.get({ messageId: 1 }, cb))).err?.message).toBe('missing packet');
  });
});
