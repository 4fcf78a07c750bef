import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { DeviceWedgeGuard, type WedgeGuardDevice, type WedgeRecovery } from '../../host/gateway/device-wedge-guard.ts';

/** A link whose session state the test sets; pause() and resume() as DeviceLink does them. */
function fakeDevice(clock: ManualClock, id = 'dev-a', state = 'ready') {
  const calls: string[] = [];
  let finishPause: (() => void) | null = null;
  const link = {
    state,
    session: { lostDeadline: clock.now() + 3000 },
    isPaused: false,
    holdPause: false,
    pause(cause: string) {
      calls.push(`pause: ${cause}`);
      link.isPaused = true;
      link.state = 'init';
      if (!link.holdPause) return Promise.resolve();
      return new Promise<void>((resolve) => (finishPause = resolve));
    },
    resume() {
      calls.push('resume');
      link.isPaused = false;
    },
  };
  const device: WedgeGuardDevice = { id, handshakeTimeoutMs: 3000, link };
  /** The board keeps answering: its lost deadline moves with every PONG. */
  const pong = () => (link.session.lostDeadline = clock.now() + 3000);
  return { device, link, calls, pong, finishPause: () => finishPause?.() };
}

function setup(clock: ManualClock, devices: WedgeGuardDevice[], options: { wedgeGraceMs?: number; maxBackoffMs?: number } = {}) {
  const log = new RecordingLogger();
  const recoveries: WedgeRecovery[] = [];
  const guard = new DeviceWedgeGuard({
    devices: () => devices,
    clock,
    logger: log,
    sampleMs: 500,
    wedgeGraceMs: options.wedgeGraceMs ?? 5000,
    maxBackoffMs: options.maxBackoffMs,
    onRecovery: (r) => recoveries.push(r),
  });
  return { clock, log, recoveries, guard };
}

const flush = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe('DeviceWedgeGuard', () => {
  it('leaves answering boards alone', () => {
    const clock = new ManualClock();
    const a = fakeDevice(clock);
    const devices = [a.device];
    const guard = new DeviceWedgeGuard({ devices: () => devices, clock, sampleMs: 500, wedgeGraceMs: 5000 });
    guard.start();
    for (let i = 0; i < 100; i++) {
      clock.advance(500);
      a.pong();
    }
    expect(a.calls).toEqual([]);
    expect(guard.recoveries('dev-a')).toBe(0);
  });

  it('by default looks at each device every 2 s (issue 15: at 500 ms the looking was ~2.5 % of a 9,900-board daemon), and still recovers a wedge within bound + grace + 2 s', async () => {
    const clock = new ManualClock();
    const a = fakeDevice(clock);
    let looks = 0;
    const { link } = a;
    let state = link.state;
    Object.defineProperty(link, 'state', {
      get: () => (looks++, state),
      set: (v: string) => (state = v),
    });
    const recoveries: WedgeRecovery[] = [];
    const guard = new DeviceWedgeGuard({ devices: () => [a.device], clock, onRecovery: (r) => recoveries.push(r) });
    expect(guard.sampleMs).toBe(2000);
    guard.start();
    const bound = link.session.lostDeadline; // dev-a went silent: its session should say lost at this deadline
    let recoveredAt = -1;
    let looksIn10s = 0;
    for (let t = 0; t < 30_000 && recoveredAt < 0; t += 100) {
      clock.advance(100);
      await flush();
      if (clock.now() === 10_000) looksIn10s = looks;
      if (recoveries.length > 0) recoveredAt = clock.now();
    }
    expect(recoveredAt).toBeGreaterThan(bound + 10_000); // the default grace
    expect(recoveredAt).toBeLessThanOrEqual(bound + 10_000 + 2000);
    // At most 6 samples in the first 10 s (0, 2, ..., 10 s; a sample reads the state at most twice); every 500 ms it was 21.
    expect(looksIn10s).toBeGreaterThanOrEqual(5);
    expect(looksIn10s).toBeLessThanOrEqual(12);
    await guard.stop();
    expect(clock.pending).toBe(0);
  });

  it('a session still ready long past its own lost deadline is wedged: its link alone is closed and reopened, counted and logged', async () => {
    const clock = new ManualClock();
    const a = fakeDevice(clock);
    const b = fakeDevice(clock, 'dev-b');
    const { log, recoveries, guard } = setup(clock, [a.device, b.device]);
    guard.start();
    // dev-a went silent at deadline - 3 s; its session should have said lost at the deadline.
    for (let t = 0; t < 8000; t += 500) {
      clock.advance(500);
      b.pong();
    }
    expect(a.calls).toEqual([]); // deadline + grace: not yet
    clock.advance(500);
    b.pong();
    await flush();
    expect(a.calls).toEqual(['pause: wedged in ready: reopening the link', 'resume']);
    expect(b.calls).toEqual([]);
    expect(recoveries).toEqual([{ id: 'dev-a', state: 'ready', pastBoundMs: expect.any(Number), count: 1 }]);
    expect(log.records.find((r) => r.level === 'warn')?.msg).toMatch(/^device dev-a wedged in ready \(\d+ s past its lost bound\): closing and reopening its link \(recovery 1\)$/);
    expect(log.records.some((r) => r.msg === 'device dev-a: link reopened')).toBe(true);
    // The reopen worked: the handshake completes and the board answers again.
    a.link.state = 'ready';
    for (let i = 0; i < 100; i++) {
      clock.advance(500);
      a.pong();
      b.pong();
    }
    expect(guard.recoveries('dev-a')).toBe(1);
    await guard.stop();
    expect(clock.pending).toBe(0);
  });

  it('init with nothing heard is bounded by the handshake timeout from entering init; a device the reopen does not cure is retried with backoff', async () => {
    const clock = new ManualClock();
    const a = fakeDevice(clock, 'dev-a', 'init');
    a.link.session.lostDeadline = Infinity;
    const { recoveries, guard } = setup(clock, [a.device], { wedgeGraceMs: 5000, maxBackoffMs: 20_000 });
    guard.start();
    const times: number[] = [];
    const before = () => recoveries.length;
    for (let t = 0; t < 120_000; t += 500) {
      const n = before();
      clock.advance(500);
      await flush();
      if (recoveries.length > n) times.push(clock.now());
    }
    // First after handshake (3 s) + grace (5 s); then each after the later of a fresh bound
    // (3 s + 5 s) and a wait that doubles (5, 10, 20, capped at 20 s), since it never left init.
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(times[0]).toBe(8500);
    expect(gaps.slice(0, 4)).toEqual([8500, 10_000, 20_000, 20_000]);
    await guard.stop();
  });

  it('lost, sleeping, disconnected and lent-out links are never recovered', async () => {
    const clock = new ManualClock();
    const devices = ['lost', 'sleeping', 'disconnected', 'init'].map((state) => fakeDevice(clock, state, state));
    devices[3]!.link.isPaused = true; // flashing
    const { guard } = setup(clock, devices.map((d) => d.device), { wedgeGraceMs: 1000 });
    guard.start();
    clock.advance(3_600_000);
    // Given back after a long flash: its bound starts now, not when it was lent out.
    devices[3]!.link.isPaused = false;
    clock.advance(3500);
    await flush();
    expect(devices.flatMap((d) => d.calls)).toEqual([]);
    await guard.stop();
  });

  it('a recovery in flight is reported (for the health check) until it finishes, and stop() waits for it', async () => {
    const clock = new ManualClock();
    const a = fakeDevice(clock);
    a.link.holdPause = true;
    const { guard } = setup(clock, [a.device]);
    guard.start();
    clock.advance(9000);
    expect(guard.recovering).toEqual([{ id: 'dev-a', startedAt: 8500 }]);
    clock.advance(60_000);
    expect(a.calls).toHaveLength(1); // one at a time
    let stopped = false;
    const stopping = guard.stop().then(() => (stopped = true));
    await flush();
    expect(stopped).toBe(false);
    a.finishPause();
    await stopping;
    expect(guard.recovering).toEqual([]);
    expect(a.calls).toEqual(['pause: wedged in ready: reopening the link', 'resume']);
  });
  it('forgets a device that left the list (a board removed), and tracks it afresh if it comes back', async () => {
    const clock = new ManualClock();
    const a = fakeDevice(clock);
    const b = fakeDevice(clock, 'dev-b');
    const devices = [a.device, b.device];
    const { guard } = setup(clock, devices);
    guard.start();
    for (let t = 0; t < 9000; t += 500) {
      clock.advance(500);
      b.pong();
    }
    await flush();
    expect(guard.recoveries('dev-a')).toBe(1);
    a.link.state = 'ready';
    a.pong();
    devices.splice(0, 1); // dev-a removed
    clock.advance(500);
    expect(guard.recoveries('dev-a')).toBe(0);
    expect(guard.recoveries('dev-b')).toBe(0);
    devices.push(a.device); // back: a fresh bound, not wedged at once
    for (let i = 0; i < 10; i++) {
      clock.advance(500);
      a.pong();
      b.pong();
    }
    expect(a.calls.filter((c) => c === 'resume')).toHaveLength(1);
    await guard.stop();
  });
});
