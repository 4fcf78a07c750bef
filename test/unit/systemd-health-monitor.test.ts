import { describe, expect, it } from 'vitest';
import { brokerDownBound, HealthMonitor, type BrokerHealthInput, type RecoveryInput } from '../../host/systemd/health-monitor.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';

function setup(options: { brokerDownBoundMs?: number; recoveryTimeoutMs?: number } = {}) {
  const clock = new ManualClock();
  const brokers: BrokerHealthInput[] = [
    { name: 'tether-gw', connected: true },
    { name: 'tether-gw-dev-a', connected: true },
  ];
  const recoveries: RecoveryInput[] = [];
  const monitor = new HealthMonitor({
    sources: { brokers: () => brokers, recoveries: () => recoveries },
    clock,
    sampleMs: 500,
    maxLagMs: 1000,
    brokerDownBoundMs: options.brokerDownBoundMs ?? 4000,
    recoveryTimeoutMs: options.recoveryTimeoutMs ?? 30_000,
  });
  return { clock, brokers, recoveries, monitor };
}

describe('HealthMonitor', () => {
  it('is healthy with a responsive loop and connected sessions', () => {
    const { clock, monitor } = setup();
    monitor.start();
    for (let i = 0; i < 20; i++) {
      clock.advance(500);
      expect(monitor.check()).toMatchObject({ healthy: true, reasons: [], notes: [], brokersDown: [], recovering: [] });
    }
    monitor.stop();
    expect(clock.pending).toBe(0);
  });

  it('event loop lag above the bound is unhealthy, and healthy again once the loop keeps time', () => {
    const { clock, monitor } = setup();
    monitor.start();
    clock.advance(500);
    clock.block(800); // late, but under 1 s
    clock.advance(0);
    expect(monitor.check().healthy).toBe(true);
    clock.advance(500);
    // The loop stalls 1.7 s: the sample timer is overdue while it lasts, and fires 1.7 s late.
    clock.block(1700);
    const during = monitor.check();
    expect(during.healthy).toBe(false);
    expect(during.reasons.join()).toMatch(/event loop lag \d+ ms > 1000 ms/);
    clock.advance(0); // the late timer fires: lag measured
    expect(monitor.check().lagMs).toBeGreaterThan(1000);
    expect(monitor.check().healthy).toBe(false);
    clock.advance(500); // the next sample is on time
    expect(monitor.check()).toMatchObject({ healthy: true });
    monitor.stop();
  });

  it('a broker outage, however long, is a note and never unhealthy (the outbox is for that)', () => {
    const { clock, brokers, monitor } = setup({ brokerDownBoundMs: 4000 });
    monitor.start();
    clock.advance(500);
    brokers[1]!.connected = false;
    for (let t = 0; t < 4000; t += 500) {
      clock.advance(500);
      const report = monitor.check();
      expect(report).toMatchObject({ healthy: true, notes: [] }); // down, within the reconnect bound
      expect(report.brokersDown).toEqual([{ name: 'tether-gw-dev-a', downForMs: expect.any(Number) }]);
    }
    clock.advance(1000);
    expect(monitor.check()).toMatchObject({ healthy: true, reasons: [], notes: [expect.stringMatching(/broker session tether-gw-dev-a down for 5 s \(outbox keeps messages\)/)] });
    brokers[0]!.connected = false; // the whole broker is gone, for an hour
    clock.advance(3_600_000);
    const report = monitor.check();
    expect(report.healthy).toBe(true);
    expect(report.notes).toHaveLength(2);
    brokers[0]!.connected = brokers[1]!.connected = true; // back
    clock.advance(500);
    expect(monitor.check()).toMatchObject({ healthy: true, notes: [], brokersDown: [] });
    monitor.stop();
  });

  it('brokerDownBound is backoff max + keepalive + PINGRESP timeout', () => {
    expect(brokerDownBound({ keepaliveSec: 30, pingRespTimeoutMs: 5000, backoff: { maxMs: 30_000 } })).toBe(65_000);
    expect(brokerDownBound({ keepaliveSec: 1, pingRespTimeoutMs: 1000, backoff: { maxMs: 500 } })).toBe(2500);
  });

  it('a device recovery in flight is a note; one that does not finish within its bound is unhealthy (only a restart clears it)', () => {
    const { clock, recoveries, monitor } = setup({ recoveryTimeoutMs: 30_000 });
    monitor.start();
    recoveries.push({ id: 'dev-a', startedAt: clock.now() });
    clock.advance(1000);
    expect(monitor.check()).toMatchObject({ healthy: true, notes: ['device dev-a wedged: reopening its link'], recovering: [{ id: 'dev-a', forMs: 1000 }] });
    clock.advance(29_500);
    const stuck = monitor.check();
    expect(stuck.healthy).toBe(false);
    expect(stuck.reasons).toEqual([expect.stringMatching(/reopening the link of device dev-a has not finished after 31 s \(> 30 s\)/)]);
    recoveries.pop(); // it finished
    expect(monitor.check()).toMatchObject({ healthy: true, notes: [] });
    monitor.stop();
  });

  it('rejects nonsense bounds', () => {
    const sources = { brokers: () => [] };
    expect(() => new HealthMonitor({ sources, maxLagMs: 0 })).toThrow(/maxLagMs/);
    expect(() => new HealthMonitor({ sources, brokerDownBoundMs: Number.NaN })).toThrow(/brokerDownBoundMs/);
    expect(() => new HealthMonitor({ sources, recoveryTimeoutMs: -1 })).toThrow(/recoveryTimeoutMs/);
  });
});
