import { describe, expect, it } from 'vitest';
import { brokerDownBound, HealthMonitor, type BrokerHealthInput, type DeviceHealthInput } from '../../host/systemd/health-monitor.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';


function setup(options: { brokerDownBoundMs?: number; wedgeGraceMs?: number } = {}) {
  const clock = new ManualClock();
  const brokers: BrokerHealthInput[] = [
    { name: 'tether-gw', connected: true },
    { name: 'tether-gw-dev-a', connected: true },
  ];
  const devices: DeviceHealthInput[] = [{ id: 'dev-a', state: 'ready', lostDeadline: clock.now() + 3000, handshakeTimeoutMs: 3000 }];
  const monitor = new HealthMonitor({
    sources: { brokers: () => brokers, devices: () => devices },
    clock,
    sampleMs: 500,
    maxLagMs: 1000,
    brokerDownBoundMs: options.brokerDownBoundMs ?? 4000,
    wedgeGraceMs: options.wedgeGraceMs ?? 5000,
  });
  /** The board keeps answering: its lost deadline moves with every PONG. */
  const pong = () => (devices[0]!.lostDeadline = clock.now() + 3000);
  return { clock, brokers, devices, monitor, pong };
}

describe('HealthMonitor', () => {
  it('is healthy with a responsive loop, connected sessions and answering boards', () => {
    const { clock, monitor, pong } = setup();
    monitor.start();
    for (let i = 0; i < 20; i++) {
      clock.advance(500);
      pong();
      expect(monitor.check()).toMatchObject({ healthy: true, reasons: [], brokersDown: [], wedged: [] });
    }
    monitor.stop();
    expect(clock.pending).toBe(0);
  });

  it('event loop lag above the bound is unhealthy, and healthy again once the loop keeps time', () => {
    const { clock, monitor, pong } = setup();
    monitor.start();
    clock.advance(500);
    clock.block(800); // late, but under 1 s
    clock.advance(0);
    expect(monitor.check().healthy).toBe(true);
    clock.advance(500);
    pong();
    // The loop stalls 1.7 s: the sample timer is overdue while it lasts, and fires 1.7 s late.
    clock.block(1700);
    const during = monitor.check();
    expect(during.healthy).toBe(false);
    expect(during.reasons.join()).toMatch(/event loop lag \d+ ms > 1000 ms/);
    clock.advance(0); // the late timer fires: lag measured
    pong();
    expect(monitor.check().lagMs).toBeGreaterThan(1000);
    expect(monitor.check().healthy).toBe(false);
    clock.advance(500); // the next sample is on time
    pong();
    expect(monitor.check()).toMatchObject({ healthy: true });
    monitor.stop();
  });

  it('a broker session down past its bound is unhealthy; healthy again after the reconnect', () => {
    const { clock, brokers, monitor, pong } = setup({ brokerDownBoundMs: 4000 });
    monitor.start();
    clock.advance(500);
    brokers[1]!.connected = false;
    for (let t = 0; t < 4000; t += 500) {
      clock.advance(500);
      pong();
      const report = monitor.check();
      expect(report.healthy).toBe(true); // down, but within the reconnect bound
      expect(report.brokersDown).toEqual([{ name: 'tether-gw-dev-a', downForMs: expect.any(Number) }]);
    }
    // Down-since is sampled (every 500 ms here): it started at the first sample after the drop.
    clock.advance(1000);
    pong();
    const down = monitor.check();
    expect(down.healthy).toBe(false);
    expect(down.reasons).toEqual([expect.stringMatching(/broker session tether-gw-dev-a down for 5 s > 4 s/)]);
    clock.advance(10_000);
    pong();
    expect(monitor.check().healthy).toBe(false);
    brokers[1]!.connected = true; // reconnected
    clock.advance(500);
    pong();
    expect(monitor.check()).toMatchObject({ healthy: true, brokersDown: [] });
    // A later outage starts its own clock.
    brokers[0]!.connected = false;
    clock.advance(3500);
    pong();
    expect(monitor.check().healthy).toBe(true);
    monitor.stop();
  });

  it('brokerDownBound is backoff max + keepalive + PINGRESP timeout', () => {
    expect(brokerDownBound({ keepaliveSec: 30, pingRespTimeoutMs: 5000, backoff: { maxMs: 30_000 } })).toBe(65_000);
    expect(brokerDownBound({ keepaliveSec: 1, pingRespTimeoutMs: 1000, backoff: { maxMs: 500 } })).toBe(2500);
  });

  it('a session still ready long past its own lost deadline is wedged', () => {
    const { clock, devices, monitor } = setup({ wedgeGraceMs: 5000 });
    monitor.start();
    // The board went silent at deadline - 3 s; the session should be lost at the deadline.
    clock.advance(3000 + 5000); // deadline + grace: not yet
    expect(monitor.check().healthy).toBe(true);
    clock.advance(500);
    const report = monitor.check();
    expect(report.healthy).toBe(false);
    expect(report.wedged).toEqual([{ id: 'dev-a', state: 'ready', overdueMs: expect.any(Number) }]);
    expect(report.reasons).toEqual([expect.stringMatching(/device dev-a wedged in ready/)]);
    // It finally declares the board lost: a lost board is not the daemon's fault.
    devices[0]!.state = 'lost';
    clock.advance(500);
    expect(monitor.check().healthy).toBe(true);
    clock.advance(600_000);
    expect(monitor.check().healthy).toBe(true);
    monitor.stop();
  });

  it('init with nothing heard is bounded by the handshake timeout from entering init', () => {
    const { clock, devices, monitor } = setup({ wedgeGraceMs: 5000 });
    devices[0] = { id: 'dev-a', state: 'init', lostDeadline: Infinity, handshakeTimeoutMs: 3000 };
    monitor.start();
    clock.advance(7500);
    expect(monitor.check().healthy).toBe(true);
    clock.advance(1000);
    expect(monitor.check().wedged.map((w) => w.id)).toEqual(['dev-a']);
    // lost (handshake timed out), then init again when the link comes back: a fresh bound.
    devices[0]!.state = 'lost';
    clock.advance(500);
    devices[0]!.state = 'init';
    clock.advance(500);
    expect(monitor.check().healthy).toBe(true);
    monitor.stop();
  });

  it('sleeping, lost and disconnected boards never make the daemon unhealthy', () => {
    const { clock, devices, monitor } = setup({ wedgeGraceMs: 1000 });
    devices.push(
      { id: 'asleep', state: 'sleeping', lostDeadline: clock.now(), handshakeTimeoutMs: 3000 },
      { id: 'unplugged', state: 'lost', lostDeadline: clock.now(), handshakeTimeoutMs: 3000 },
      { id: 'gone', state: 'disconnected', lostDeadline: clock.now(), handshakeTimeoutMs: 3000 },
    );
    devices[0]!.state = 'lost';
    monitor.start();
    clock.advance(3_600_000);
    expect(monitor.check()).toMatchObject({ healthy: true, wedged: [] });
    monitor.stop();
  });

  it('a ready state entered just now is given the handshake time even with a stale deadline (after a sleep)', () => {
    const { clock, devices, monitor } = setup({ wedgeGraceMs: 5000 });
    devices[0] = { id: 'dev-a', state: 'sleeping', lostDeadline: clock.now() + 3000, handshakeTimeoutMs: 3000 };
    monitor.start();
    clock.advance(60_000); // a long sleep: the detector's deadline is a minute old
    devices[0]!.state = 'ready';
    clock.advance(500);
    expect(monitor.check().healthy).toBe(true);
    monitor.stop();
  });

  it('rejects nonsense bounds', () => {
    const sources = { brokers: () => [], devices: () => [] };
    expect(() => new HealthMonitor({ sources, maxLagMs: 0 })).toThrow(/maxLagMs/);
    expect(() => new HealthMonitor({ sources, brokerDownBoundMs: Number.NaN })).toThrow(/brokerDownBoundMs/);
  });
});
