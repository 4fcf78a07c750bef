import { EventEmitter } from 'node:events';
import { beforeEach, describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import type { Clock } from '../../host/time/clock.ts';
import { ReconnectingTransport, type RetryInfo } from '../../host/transport/reconnecting-transport.ts';
import { TransportError, type Transport, type TransportEvents } from '../../host/transport/transport.ts';

/** A transport whose open() succeeds, fails or hangs as the test says. */
class FakeTransport extends EventEmitter<TransportEvents> implements Transport {
  isOpen = false;
  readonly written: Buffer[] = [];
  private settleOpen: ((err?: TransportError) => void) | null = null;

  constructor(
    readonly description: string,
    private readonly behaviour: 'ok' | 'fail' | 'hang',
  ) {
    super();
  }

  open(): Promise<void> {
    if (this.behaviour === 'fail') return Promise.reject(new TransportError('not-found', `${this.description} not found`));
    return new Promise<void>((resolve, reject) => {
      this.settleOpen = (err) => {
        this.settleOpen = null;
        if (err) return reject(err);
        this.isOpen = true;
        resolve();
      };
      if (this.behaviour === 'ok') this.settleOpen();
    });
  }
  /** For 'hang': finish the pending open now. */
  finishOpen(err?: TransportError) {
    this.settleOpen?.(err);
  }
  write(bytes: Uint8Array): boolean {
    if (!this.isOpen) return false;
    this.written.push(Buffer.from(bytes));
    return true;
  }
  async close(): Promise<void> {
    this.settleOpen?.(new TransportError('closed', 'closed while opening'));
    if (!this.isOpen) return;
    this.isOpen = false;
    this.emit('close', null);
  }
  /** The device goes away. */
  drop(reason = new TransportError('closed', `${this.description}: device disconnected`)) {
    this.isOpen = false;
    this.emit('close', reason);
  }
  receive(bytes: string) {
    this.emit('data', Buffer.from(bytes));
  }
}

/** The "device": decides how each new transport behaves and keeps every one made. */
class FakeLink {
  behaviour: 'ok' | 'fail' | 'hang' = 'ok';
  readonly made: FakeTransport[] = [];
  readonly openTimes: number[] = [];
  constructor(private readonly clock: Clock) {}
  factory = (): Transport => {
    const t = new FakeTransport('fake://board', this.behaviour);
    this.made.push(t);
    this.openTimes.push(this.clock.now());
    return t;
  };
  get last(): FakeTransport {
    return this.made.at(-1)!;
  }
}

let clock: ManualClock;

function setup(backoff = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 'none' as const }) {
  const link = new FakeLink(clock);
  const logger = new RecordingLogger();
  const rt = new ReconnectingTransport(link.factory, { backoff, clock: clock, logger });
  const events: string[] = [];
  const downs: TransportError[] = [];
  const retries: RetryInfo[] = [];
  const data: string[] = [];
  rt.on('up', () => events.push('up'));
  rt.on('down', (e) => {
    events.push(`down:${e.code}`);
    downs.push(e);
  });
  rt.on('retry', (r) => {
    events.push(`retry:${r.attempt}:${r.delayMs}`);
    retries.push(r);
  });
  rt.on('data', (d) => data.push(d.toString()));
  return { link, logger, rt, events, downs, retries, data };
}

/** Lets promise callbacks run without moving the clock. */
const settle = () => clock.advanceAsync(0);

describe('ReconnectingTransport (fake transport, fake time)', () => {
  beforeEach(() => {
    clock = new ManualClock();
  });

  it('comes up on start and passes data both ways', async () => {
    const { link, rt, events, data } = setup();
    expect(rt.write(Buffer.from('early'))).toBe(false);
    rt.start();
    await settle();
    expect(events).toEqual(['up']);
    expect(rt.isUp).toBe(true);
    expect(rt.write(Buffer.from('ping'))).toBe(true);
    expect(link.last.written.map(String)).toEqual(['ping']);
    link.last.receive('pong');
    expect(data).toEqual(['pong']);
    await rt.stop();
  });

  it('retries a failing open with growing delays until it succeeds, forever', async () => {
    const { link, rt, events, retries } = setup();
    link.behaviour = 'fail';
    rt.start();
    await clock.advanceAsync(100 + 200 + 400 + 800 + 1000 + 1000 - 1);
    // Opens at 0, 100, 300, 700, 1500, 2500; the next is due at 3500.
    expect(link.openTimes).toEqual([0, 100, 300, 700, 1500, 2500]);
    expect(retries.map((r) => r.delayMs)).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(retries.map((r) => r.attempt)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(retries.every((r) => r.error.code === 'not-found')).toBe(true);
    expect(rt.isUp).toBe(false);
    link.behaviour = 'ok';
    await clock.advanceAsync(1);
    expect(link.openTimes.at(-1)).toBe(3500);
    expect(rt.isUp).toBe(true);
    expect(events.filter((e) => e === 'up')).toHaveLength(1);
    await rt.stop();
  });

  it('logs why the link is down and when the next try is', async () => {
    const { link, rt, logger } = setup();
    link.behaviour = 'fail';
    rt.start();
    await clock.advanceAsync(100);
    const warns = logger.records.filter((r) => r.level === 'warn');
    expect(warns).toHaveLength(2);
    expect(warns[0]).toEqual({
      level: 'warn',
      obj: expect.objectContaining({
        target: 'fake://board',
        attempt: 1,
        delayMs: 100,
        code: 'not-found',
        reason: 'fake://board not found',
      }),
      msg: 'link down, retrying in 100 ms',
    });
    expect(warns[1]!.msg).toBe('link down, retrying in 200 ms');
    expect(warns[1]!.obj).toMatchObject({ attempt: 2, delayMs: 200 });

    link.behaviour = 'ok';
    await clock.advanceAsync(200);
    const info = logger.records.filter((r) => r.level === 'info' && r.msg === 'link up');
    expect(info).toHaveLength(1);
    expect(info[0]!.obj).toMatchObject({ target: 'fake://board' });
    await rt.stop();
  });

  it("emits 'down' once per outage (not per failed try), then 'up' after recovery", async () => {
    const { link, rt, events, downs } = setup();
    rt.start();
    await settle();
    link.behaviour = 'fail';
    link.last.drop();
    await clock.advanceAsync(100 + 200 + 400);
    expect(events).toEqual(['up', 'down:closed', 'retry:1:100', 'retry:2:200', 'retry:3:400', 'retry:4:800']);
    expect(downs[0]!.message).toBe('fake://board: device disconnected');
    expect(rt.isUp).toBe(false);

    link.behaviour = 'ok';
    await clock.advanceAsync(800);
    expect(events.slice(-1)).toEqual(['up']);
    expect(rt.isUp).toBe(true);

    // A second outage is reported again.
    link.last.drop();
    await settle();
    expect(events.filter((e) => e.startsWith('down'))).toEqual(['down:closed', 'down:closed']);
    await rt.stop();
  });

  it("reports a failed first open as 'down' with the open's error", async () => {
    const { link, rt, downs } = setup();
    link.behaviour = 'fail';
    rt.start();
    await settle();
    expect(downs).toHaveLength(1);
    expect(downs[0]).toBeInstanceOf(TransportError);
    expect(downs[0]!.code).toBe('not-found');
    await rt.stop();
  });

  it('resets the backoff after a success', async () => {
    const { link, rt, retries } = setup();
    link.behaviour = 'fail';
    rt.start();
    await clock.advanceAsync(100 + 200 + 400); // 4 failures: delays 100, 200, 400, 800
    link.behaviour = 'ok';
    await clock.advanceAsync(800);
    expect(rt.isUp).toBe(true);
    link.last.drop();
    await settle();
    expect(retries.at(-1)).toMatchObject({ attempt: 1, delayMs: 100 });
    await clock.advanceAsync(100);
    expect(rt.isUp).toBe(true);
    await rt.stop();
  });

  it('write() is false while down and the bytes do not reach any transport', async () => {
    const { link, rt } = setup();
    rt.start();
    await settle();
    const first = link.last;
    link.behaviour = 'fail';
    first.drop();
    await settle();
    expect(rt.write(Buffer.from('lost'))).toBe(false);
    expect(first.written).toEqual([]);
    link.behaviour = 'ok';
    await clock.advanceAsync(100);
    expect(rt.write(Buffer.from('after'))).toBe(true);
    expect(link.last).not.toBe(first);
    expect(link.last.written.map(String)).toEqual(['after']);
    await rt.stop();
  });

  it('ignores data from a transport that has dropped', async () => {
    const { link, rt, data } = setup();
    rt.start();
    await settle();
    const old = link.last;
    old.drop();
    old.receive('stale');
    expect(data).toEqual([]);
    expect(old.listenerCount('data')).toBe(0);
    expect(old.listenerCount('close')).toBe(0);
    await rt.stop();
  });

  it('stop() cancels the pending retry: no timer left, no further opens', async () => {
    const { link, rt, events } = setup();
    link.behaviour = 'fail';
    rt.start();
    await settle();
    expect(clock.pending).toBe(1);
    await rt.stop();
    expect(clock.pending).toBe(0);
    link.behaviour = 'ok';
    await clock.advanceAsync(60_000);
    expect(link.made).toHaveLength(1);
    expect(events).not.toContain('up');
  });

  it('stop() closes the open transport, removes its listeners and emits no down', async () => {
    const { link, rt, events } = setup();
    rt.start();
    await settle();
    const t = link.last;
    await rt.stop();
    expect(t.isOpen).toBe(false);
    expect(t.listenerCount('data') + t.listenerCount('close')).toBe(0);
    expect(rt.isUp).toBe(false);
    expect(rt.write(Buffer.from('x'))).toBe(false);
    expect(events).toEqual(['up']);
    expect(clock.pending).toBe(0);
  });

  it('stop() during a pending open leaves nothing open, even if the open completes', async () => {
    const { link, rt, events } = setup();
    link.behaviour = 'hang';
    rt.start();
    await settle();
    const t = link.last;
    // This transport ignores close() while opening and opens anyway.
    let closes = 0;
    t.close = async () => {
      closes++;
      t.isOpen = false;
    };
    let stopDone = false;
    const stopped = rt.stop().then(() => {
      stopDone = true;
    });
    await settle();
    expect(closes).toBe(1);
    expect(stopDone).toBe(false); // still waiting for the open in flight
    t.finishOpen();
    expect(t.isOpen).toBe(true);
    await stopped;
    // stop() waited for the late open and closed what it opened.
    expect(closes).toBe(2);
    expect(t.isOpen).toBe(false);
    expect(events).toEqual([]);
    expect(rt.isUp).toBe(false);
    expect(clock.pending).toBe(0);
  });

  it('can be started again after stop()', async () => {
    const { link, rt, events } = setup();
    rt.start();
    await settle();
    await rt.stop();
    rt.start();
    await settle();
    expect(events).toEqual(['up', 'up']);
    expect(link.made).toHaveLength(2);
    await rt.stop();
  });

  it('a throwing listener or factory does not break the retry loop', async () => {
    const link = new FakeLink(clock);
    const logger = new RecordingLogger();
    let factoryThrows = true;
    const rt = new ReconnectingTransport(
      () => {
        if (factoryThrows) throw new Error('cannot make transport');
        return link.factory();
      },
      { backoff: { initialMs: 100, jitter: 'none' }, clock: clock, logger },
    );
    rt.on('down', () => {
      throw new Error('listener bug');
    });
    const ups: number[] = [];
    rt.on('up', () => ups.push(clock.now()));
    rt.start();
    await settle();
    expect(logger.records.some((r) => r.level === 'error' && /'down' listener threw/.test(r.msg ?? ''))).toBe(true);
    expect(logger.records.find((r) => r.level === 'warn')!.obj).toMatchObject({ code: 'io', reason: 'cannot make transport' });
    factoryThrows = false;
    await clock.advanceAsync(100);
    expect(ups).toEqual([100]);
    await rt.stop();
  });

  it('stop() called from a down listener stops the loop', async () => {
    const { link, rt } = setup();
    link.behaviour = 'fail';
    let stopped: Promise<void> | null = null;
    rt.on('down', () => {
      stopped = rt.stop();
    });
    rt.start();
    await settle();
    await stopped;
    expect(clock.pending).toBe(0);
    await clock.advanceAsync(10_000);
    expect(link.made).toHaveLength(1);
  });
});

describe('ReconnectingTransport.recycle (a link that looks open but carries nothing)', () => {
  beforeEach(() => {
    clock = new ManualClock();
  });

  function healing() {
    const link = new FakeLink(clock);
    const logger = new RecordingLogger();
    const rt = new ReconnectingTransport(link.factory, {
      backoff: { initialMs: 100, maxMs: 1000, factor: 2, jitter: 'none' },
      clock: clock,
      logger,
      resetBackoffOn: 'healthy',
    });
    const events: string[] = [];
    rt.on('up', () => events.push(`up@${clock.now()}`));
    rt.on('down', (e) => events.push(`down:${e.message}`));
    return { link, logger, rt, events };
  }

  it('closes the open transport, reports down with the reason, and reopens a fresh one after the backoff', async () => {
    const { link, rt, events } = healing();
    rt.start();
    await settle();
    const first = link.last;
    rt.recycle('board lost with the connection open');
    expect(first.isOpen).toBe(false);
    expect(rt.isUp).toBe(false);
    expect(events).toEqual(['up@0', 'down:fake://board: board lost with the connection open']);
    await clock.advanceAsync(100);
    expect(link.made).toHaveLength(2);
    expect(events.at(-1)).toBe('up@100');
    await rt.stop();
  });

  it("with resetBackoffOn 'healthy', opening is not enough: delays keep growing until markHealthy()", async () => {
    const { link, rt } = healing();
    rt.start();
    await settle();
    for (const expected of [100, 200, 400, 800, 1000]) {
      const before = clock.now();
      rt.recycle('silent');
      await clock.advanceAsync(expected);
      expect(link.openTimes.at(-1)! - before).toBe(expected);
    }
    rt.markHealthy();
    const before = clock.now();
    rt.recycle('silent');
    await clock.advanceAsync(100);
    expect(link.openTimes.at(-1)! - before).toBe(100);
    await rt.stop();
  });

  it('does nothing unless up; stop() right after a recycle leaves nothing behind', async () => {
    const { link, rt } = healing();
    rt.recycle('not started');
    expect(link.made).toHaveLength(0);
    rt.start();
    await settle();
    rt.recycle('silent');
    await rt.stop();
    expect(clock.pending).toBe(0);
    await clock.advanceAsync(5_000);
    expect(link.made).toHaveLength(1);
  });

  it('logs retries 1, 2, 4, 8, ... at WARN and the others at DEBUG (a bridge retried every second for a day)', async () => {
    const link = new FakeLink(clock);
    const logger = new RecordingLogger();
    const rt = new ReconnectingTransport(link.factory, { backoff: { initialMs: 100, maxMs: 100, jitter: 'none' }, clock: clock, logger });
    link.behaviour = 'fail';
    rt.start();
    await clock.advanceAsync(100 * 40);
    const warned = logger.records.filter((e) => e.level === 'warn' && e.msg?.startsWith('link down')).map((e) => (e.obj as { attempt: number }).attempt);
    expect(warned).toEqual([1, 2, 4, 8, 16, 32]);
    await rt.stop();
  });
});
