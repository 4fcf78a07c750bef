import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableOutbox, type OutboxKind } from '../../host/mqtt/durable-outbox.ts';
import { OutboxPump, type Publisher } from '../../host/mqtt/outbox-pump.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';

let dir: string;
let n = 0;
const outboxes: DurableOutbox[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tether-pump-'));
});

afterEach(async () => {
  for (const o of outboxes.splice(0)) await o.close();
  rmSync(dir, { recursive: true, force: true });
});

async function outbox(): Promise<DurableOutbox> {
  const o = await DurableOutbox.open(join(dir, `o${n++}.outbox`), { maxEntries: 100_000 });
  outboxes.push(o);
  return o;
}

function put(o: DurableOutbox, topic: string, payload: string, qos: 0 | 1 = 1, kind: OutboxKind = 'telemetry') {
  return o.enqueue({ topic, payload: Buffer.from(payload), qos, retain: false, kind });
}

interface Call {
  topic: string;
  payload: string;
  opts: { qos: 0 | 1; retain: boolean };
  resolve: () => void;
  reject: (err: Error) => void;
}

/** A publisher whose publishes the test settles by hand. Like BrokerSession it fails at once when down. */
class ManualPublisher extends EventEmitter implements Publisher {
  connected = true;
  calls: Call[] = [];
  open: Call[] = [];
  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    if (!this.connected) return Promise.reject(new Error('not connected'));
    return new Promise((resolve, reject) => {
      const call: Call = {
        topic,
        payload: payload.toString(),
        opts,
        resolve: () => {
          this.open = this.open.filter((c) => c !== call);
          resolve();
        },
        reject: (err) => {
          this.open = this.open.filter((c) => c !== call);
          reject(err);
        },
      };
      this.calls.push(call);
      this.open.push(call);
    });
  }
  /** The connection drops: what is unacknowledged fails, then 'down'. */
  down(): void {
    this.connected = false;
    for (const c of [...this.open]) c.reject(new Error('connection lost'));
    this.emit('down', 'test');
  }
  up(): void {
    this.connected = true;
    this.emit('up', { sessionPresent: true });
  }
  sent(): string[] {
    return this.calls.map((c) => c.payload);
  }
}

/** Lets queued microtasks and promise callbacks run. */
const settle = () => new Promise((r) => setImmediate(r));

describe('OutboxPump', () => {
  it('sends oldest first within the inflight window and acks each entry when its publish resolves', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub, { inflight: 3 });
    for (let i = 0; i < 10; i++) put(o, `t/${i % 2}`, `m${i}`);
    pump.start();
    await settle();
    expect(pub.sent()).toEqual(['m0', 'm1', 'm2']);
    expect(pump.inFlight).toBe(3);
    pub.calls[1].resolve();
    await settle();
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['m0', ...Array.from({ length: 8 }, (_, i) => `m${i + 2}`)]);
    expect(pub.sent()).toEqual(['m0', 'm1', 'm2', 'm3']);
    expect(pump.inFlight).toBe(3);
    while (pub.open.length > 0) {
      pub.open[0].resolve();
      await settle();
      expect(pump.inFlight).toBeLessThanOrEqual(3);
    }
    expect(o.size).toBe(0);
    expect(pub.sent()).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
    expect(pump.stats).toEqual({ sent: 10, acked: 10, retried: 0 });
    expect(pub.calls[0].opts).toEqual({ qos: 1, retain: false });
  });

  it('an idle pump keeps no per-topic bookkeeping; the next round (after a failure too) keeps per-topic order', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub, { retryDelayMs: 1, clock: new ManualClock() });
    const inside = pump as unknown as { topicQueues?: Map<string, unknown>; failedTopics?: Set<string> };
    pump.start();
    put(o, 't', 'a');
    put(o, 't', 'b');
    await settle();
    expect(inside.topicQueues?.get('t')).toHaveLength(2);
    pub.calls[0].reject(new Error('refused')); // b's success is not acked: a round after a failure resends both, in order
    pub.calls[1].resolve();
    await settle();
    expect(pump.inFlight).toBe(0);
    expect(inside.topicQueues).toBeUndefined();
    expect(inside.failedTopics).toBeUndefined();
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['a', 'b']);
  });

  it('sends what is enqueued after start, and QoS 0 entries are acked once publish resolves (written)', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub);
    pump.start();
    put(o, 't', 'a', 0);
    put(o, 't', 'b', 0);
    await settle();
    expect(pub.calls.map((c) => c.opts.qos)).toEqual([0, 0]);
    pub.open[0].resolve();
    pub.open[0].resolve();
    await settle();
    expect(o.size).toBe(0);
  });

  it('waits for up when started disconnected', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    pub.connected = false;
    const pump = new OutboxPump(o, pub);
    put(o, 't', 'a');
    pump.start();
    await settle();
    expect(pub.calls).toEqual([]);
    pub.up();
    await settle();
    expect(pub.sent()).toEqual(['a']);
  });

  it('on down leaves everything pending, sends nothing while down, and resends from the oldest after up', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub, { inflight: 2 });
    for (const p of ['a', 'b', 'c']) put(o, 't', p);
    pump.start();
    await settle();
    pub.calls[0].resolve(); // a acked
    await settle();
    expect(pub.sent()).toEqual(['a', 'b', 'c']);
    pub.down(); // b, c fail
    put(o, 't', 'd');
    await settle();
    expect(pub.sent()).toEqual(['a', 'b', 'c']);
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['b', 'c', 'd']);
    pub.up();
    await settle();
    expect(pub.sent()).toEqual(['a', 'b', 'c', 'b', 'c']);
    for (let i = 0; i < 3; i++) {
      pub.open[0].resolve();
      await settle();
    }
    expect(pub.sent()).toEqual(['a', 'b', 'c', 'b', 'c', 'd']);
    expect(o.size).toBe(0);
    expect(pump.stats).toEqual({ sent: 6, acked: 4, retried: 2 });
  });

  it('ignores late results of publishes abandoned on down (they are resent, not acked twice)', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub);
    put(o, 't', 'a');
    pump.start();
    await settle();
    const stale = pub.calls[0];
    // A publisher that emits down without failing what is in flight:
    pub.connected = false;
    pub.emit('down');
    pub.up();
    await settle();
    expect(pub.sent()).toEqual(['a', 'a']);
    stale.resolve();
    await settle();
    expect(o.size).toBe(1); // only the current round's result counts
    pub.calls[1].resolve();
    await settle();
    expect(o.size).toBe(0);
    expect(pump.stats.acked).toBe(1);
  });

  it('after a failure while connected, lets the round settle, backs off, and resends in order', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const clock = new ManualClock();
    const logger = new RecordingLogger();
    const pump = new OutboxPump(o, pub, { inflight: 4, clock, logger, retryDelayMs: 100 });
    for (const p of ['x1', 'y1', 'x2', 'y2', 'x3']) put(o, p[0], p);
    pump.start();
    await settle();
    expect(pub.sent()).toEqual(['x1', 'y1', 'x2', 'y2']);
    // x2 succeeds before x1 fails: x2 must not be acked, or x1 would reach the broker after it.
    pub.calls[2].resolve();
    pub.calls[0].reject(new Error('refused'));
    await settle();
    pub.calls[1].resolve(); // y1: its topic had no failure, acked
    await settle();
    expect(pub.sent()).toHaveLength(4); // halted: x3 not sent
    expect(logger.records.filter((r) => r.level === 'warn')).toHaveLength(1);
    pub.calls[3].resolve(); // y2: acked; round settled, retry timer armed
    await settle();
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['x1', 'x2', 'x3']);
    clock.advance(99);
    await settle();
    expect(pub.sent()).toHaveLength(4);
    clock.advance(1);
    await settle();
    expect(pub.sent().slice(4)).toEqual(['x1', 'x2', 'x3']);
    for (const c of pub.calls.slice(4)) c.resolve();
    await settle();
    expect(o.size).toBe(0);
    expect(pump.stats).toEqual({ sent: 7, acked: 5, retried: 2 });
  });

  it('doubles the backoff on repeated failures and resets it on up', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const clock = new ManualClock();
    const pump = new OutboxPump(o, pub, { clock, retryDelayMs: 100, maxRetryDelayMs: 250 });
    put(o, 't', 'a');
    pump.start();
    const failAndWait = async (ms: number) => {
      await settle();
      const before = pub.calls.length;
      pub.open[0].reject(new Error('no'));
      await settle();
      clock.advance(ms - 1);
      await settle();
      expect(pub.calls.length).toBe(before);
      clock.advance(1);
      await settle();
      expect(pub.calls.length).toBe(before + 1);
    };
    await failAndWait(100);
    await failAndWait(200);
    await failAndWait(250);
    pub.open[0].reject(new Error('no'));
    await settle();
    pub.up(); // a fresh connection: resend now
    await settle();
    expect(pub.calls.length).toBe(5);
    expect(clock.pending).toBe(0);
  });

  it('a publish that throws synchronously counts as a failure', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const clock = new ManualClock();
    let throwNext = true;
    const original = pub.publish.bind(pub);
    pub.publish = (topic, payload, opts) => {
      if (throwNext) {
        throwNext = false;
        throw new Error('boom');
      }
      return original(topic, payload, opts);
    };
    const pump = new OutboxPump(o, pub, { clock, retryDelayMs: 10 });
    put(o, 't', 'a');
    pump.start();
    await settle();
    clock.advance(10);
    await settle();
    expect(pub.sent()).toEqual(['a']);
    pub.open[0].resolve();
    await settle();
    expect(o.size).toBe(0);
  });

  it('flushed() resolves when the outbox is empty (at once if it is)', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub);
    await pump.flushed();
    put(o, 't', 'a');
    put(o, 't', 'b');
    let flushed = false;
    void pump.flushed().then(() => (flushed = true));
    pump.start();
    await settle();
    pub.open[0].resolve();
    await settle();
    expect(flushed).toBe(false);
    pub.open[0].resolve();
    await settle();
    expect(flushed).toBe(true);
  });

  it('stop() waits for what is in flight (acking successes) and then sends nothing more', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub);
    put(o, 't', 'a');
    pump.start();
    await settle();
    let stopped = false;
    const stopping = pump.stop().then(() => (stopped = true));
    put(o, 't', 'b');
    await settle();
    expect(stopped).toBe(false);
    pub.open[0].resolve();
    await stopping;
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['b']);
    put(o, 't', 'c');
    pub.up();
    await settle();
    expect(pub.sent()).toEqual(['a']);
    expect(pub.listenerCount('up') + pub.listenerCount('down') + o.listenerCount('enqueue')).toBe(0);
    // and it can start again
    pump.start();
    await settle();
    expect(pub.sent()).toEqual(['a', 'b', 'c']);
  });

  it('concurrent stop() calls share one stop', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub);
    put(o, 't', 'a');
    pump.start();
    await settle();
    let done = 0;
    const a = pump.stop().then(() => done++);
    const b = pump.stop().then(() => done++);
    await settle();
    expect(done).toBe(0);
    pub.open[0].resolve();
    await Promise.all([a, b]);
    expect(done).toBe(2);
    expect(pub.listenerCount('up')).toBe(0);
  });

  it('stop() does not hang on publishes cut off by down', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub);
    put(o, 't', 'a');
    pump.start();
    await settle();
    const stopping = pump.stop();
    pub.connected = false;
    pub.emit('down'); // without settling the publish
    await stopping;
    expect(o.size).toBe(1);
  });

  it('onceIdle() calls back once, when nothing is in flight: also when the last publish to settle was of an entry a newer one replaced (no outbox ack for it)', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub, { inflight: 1 });
    o.enqueue({ topic: 's', payload: Buffer.from('v1'), qos: 1, retain: true, kind: 'state' });
    pump.start();
    await settle();
    const acks: string[] = [];
    o.on('ack', (entry: { payload: Buffer }) => acks.push(entry.payload.toString()));
    let idle = 0;
    let forgotten = 0;
    pump.onceIdle(() => idle++);
    const stop = pump.onceIdle(() => forgotten++);
    stop();
    o.enqueue({ topic: 's', payload: Buffer.from('v2'), qos: 1, retain: true, kind: 'state' }); // replaces v1, in flight
    pub.open[0].resolve();
    await settle();
    expect(acks).toEqual([]); // v1's entry is gone: its PUBACK acks nothing in the outbox
    expect(idle).toBe(1);
    expect(pub.sent()).toEqual(['v1', 'v2']);
    pub.open[0].resolve();
    await settle();
    expect(acks).toEqual(['v2']);
    expect(idle).toBe(1); // once
    expect(forgotten).toBe(0);
  });

  it('an entry coalesced while in flight is not resent; its late ack is harmless', async () => {
    const o = await outbox();
    const pub = new ManualPublisher();
    const pump = new OutboxPump(o, pub, { inflight: 1 });
    o.enqueue({ topic: 's', payload: Buffer.from('v1'), qos: 1, retain: true, kind: 'state' });
    pump.start();
    await settle();
    o.enqueue({ topic: 's', payload: Buffer.from('v2'), qos: 1, retain: true, kind: 'state' });
    pub.open[0].reject(new Error('lost'));
    await settle();
    pub.down();
    pub.up();
    await settle();
    expect(pub.sent()).toEqual(['v1', 'v2']);
    pub.open[0].resolve();
    await settle();
    expect(o.size).toBe(0);
  });
});

// ---- property: random failures, disconnects and enqueues lose nothing and keep per-topic order ----

type Outcome = 'ok' | 'fail' | 'arrive-then-fail' | 'down';

describe('OutboxPump: property', () => {
  it('delivers every entry at least once; per topic, the last copies arrive in enqueue order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(fc.record({ topic: fc.constantFrom('a', 'b', 'c'), qos: fc.constantFrom<0 | 1>(0, 1) }), {
          minLength: 1,
          maxLength: 30,
        }),
        fc.array(
          fc.oneof(
            { weight: 6, arbitrary: fc.constant<Outcome>('ok') },
            { weight: 2, arbitrary: fc.constant<Outcome>('fail') },
            { weight: 1, arbitrary: fc.constant<Outcome>('arrive-then-fail') },
            { weight: 1, arbitrary: fc.constant<Outcome>('down') },
          ),
          { maxLength: 60 },
        ),
        fc.integer({ min: 1, max: 5 }),
        async (s, messages, outcomes, inflight) => {
          const o = await outbox();
          /** What reached the broker, in arrival order. */
          const arrived: Array<{ topic: string; id: number }> = [];
          let calls = 0;
          const pub = new (class extends EventEmitter implements Publisher {
            connected = true;
            private failPending: Array<() => void> = [];
            publish(topic: string, payload: Buffer): Promise<void> {
              if (!this.connected) return Promise.reject(new Error('down'));
              const outcome = outcomes[calls++] ?? 'ok';
              const id = Number(payload.toString());
              if (outcome !== 'fail') arrived.push({ topic, id });
              if (outcome === 'down') {
                this.connected = false;
                for (const f of this.failPending.splice(0)) f();
                this.emit('down');
                void s.schedule(Promise.resolve(), 'up').then(() => {
                  this.connected = true;
                  this.emit('up');
                });
                return Promise.reject(new Error('connection lost'));
              }
              return new Promise((resolve, reject) => {
                let done = false;
                this.failPending.push(() => {
                  done = true;
                  reject(new Error('connection lost'));
                });
                void s.schedule(Promise.resolve(), `publish ${id}`).then(() => {
                  if (done) return;
                  done = true;
                  if (outcome === 'ok') resolve();
                  else reject(new Error('failed'));
                });
              });
            }
          })();
          // Time passes when the scheduler says: each timer set gets a scheduled step that
          // moves the clock to its due time, so retries fire in any order with the rest.
          const clock = new ManualClock();
          const setTimer = clock.setTimeout.bind(clock);
          clock.setTimeout = (cb, ms) => {
            const handle = setTimer(cb, ms);
            const due = clock.now() + ms;
            void s.schedule(Promise.resolve(), 'retry timer').then(() => clock.advance(Math.max(0, due - clock.now())));
            return handle;
          };
          const pump = new OutboxPump(o, pub, { inflight, clock });
          const ids: Array<{ topic: string; id: number }> = [];
          // Some messages are there before start, the rest arrive while it runs.
          const early = Math.floor(messages.length / 2);
          const enqueue = (m: { topic: string; qos: 0 | 1 }) => {
            const id = ids.length + 1;
            const e = o.enqueue({ topic: m.topic, payload: Buffer.from(String(id)), qos: m.qos, retain: false, kind: 'telemetry' });
            expect(e.id).toBe(id);
            ids.push({ topic: m.topic, id });
          };
          messages.slice(0, early).forEach(enqueue);
          pump.start();
          for (const m of messages.slice(early)) void s.schedule(Promise.resolve(), 'enqueue').then(() => enqueue(m));
          let flushed = false;
          await s.waitIdle();
          void pump.flushed().then(() => (flushed = true));
          await s.waitIdle();
          await settle();

          expect(o.size).toBe(0);
          expect(flushed).toBe(true);
          expect(pump.inFlight).toBe(0);
          expect(pump.stats.acked).toBe(ids.length);
          expect(new Set(arrived.map((a) => a.id))).toEqual(new Set(ids.map((i) => i.id)));
          for (const topic of ['a', 'b', 'c']) {
            const sequence = arrived.filter((a) => a.topic === topic).map((a) => a.id);
            const lastCopies = sequence.filter((id, i) => sequence.lastIndexOf(id) === i);
            expect(lastCopies).toEqual(ids.filter((x) => x.topic === topic).map((x) => x.id));
          }
          await pump.stop();
        },
      ),
      { numRuns: 150 },
    );
  });
});
