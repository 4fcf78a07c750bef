import { describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { gatewayStatusLine, type GatewayView } from '../../host/systemd/gateway-watchdog.ts';
import type { HealthReport } from '../../host/systemd/health-monitor.ts';
import { SystemdWatchdog, watchdogSetting, type WatchdogNotifier } from '../../host/systemd/systemd-watchdog.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';


/** Records what would be sent, with the fake time. */
class FakeNotifier implements WatchdogNotifier {
  readonly enabled = true;
  readonly log: Array<{ at: number; what: string }> = [];
  constructor(private readonly clock: ManualClock) {}
  ready() {
    this.log.push({ at: this.clock.now(), what: 'READY=1' });
  }
  status(text: string) {
    this.log.push({ at: this.clock.now(), what: `STATUS=${text}` });
  }
  watchdog() {
    this.log.push({ at: this.clock.now(), what: 'WATCHDOG=1' });
  }
  stopping() {
    this.log.push({ at: this.clock.now(), what: 'STOPPING=1' });
  }
  async idle() {}
  times(what: string): number[] {
    return this.log.filter((e) => e.what === what).map((e) => e.at);
  }
  statuses(): Array<{ at: number; what: string }> {
    return this.log.filter((e) => e.what.startsWith('STATUS='));
  }
}

function setup(env: NodeJS.ProcessEnv = { WATCHDOG_USEC: '2000000', WATCHDOG_PID: '77' }) {
  const clock = new ManualClock();
  const notifier = new FakeNotifier(clock);
  const health = {
    report: { healthy: true, reasons: [], notes: [], lagMs: 0, brokersDown: [], recovering: [] } as HealthReport,
    started: 0,
    stopped: 0,
    check() {
      return this.report;
    },
    start() {
      this.started++;
    },
    stop() {
      this.stopped++;
    },
  };
  const sick = (reason: string) => (health.report = { ...health.report, healthy: false, reasons: [reason] });
  const well = () => (health.report = { ...health.report, healthy: true, reasons: [] });
  const note = (...notes: string[]) => (health.report = { ...health.report, notes });
  let status = '1 device: 1 ready; broker connected';
  const log = new RecordingLogger();
  const watchdog = new SystemdWatchdog({
    notifier,
    health,
    status: () => status,
    env,
    pid: 77,
    clock,
    logger: log,
    statusPollMs: 1000,
    statusMinIntervalMs: 5000,
  });
  return { clock, notifier, health, sick, well, note, watchdog, log, setStatus: (s: string) => (status = s) };
}

describe('watchdogSetting', () => {
  it('follows sd_watchdog_enabled: WATCHDOG_USEC, and WATCHDOG_PID must be us', () => {
    expect(watchdogSetting({ WATCHDOG_USEC: '30000000' }, 5)).toEqual({ enabled: true, usec: 30_000_000, intervalMs: 15_000 });
    expect(watchdogSetting({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: '5' }, 5)).toMatchObject({ enabled: true, intervalMs: 1000 });
    expect(watchdogSetting({}, 5)).toMatchObject({ enabled: false, why: expect.stringMatching(/not set/) });
    expect(watchdogSetting({ WATCHDOG_USEC: 'abc' }, 5)).toMatchObject({ enabled: false });
    expect(watchdogSetting({ WATCHDOG_USEC: '0' }, 5)).toMatchObject({ enabled: false });
    expect(watchdogSetting({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: '6' }, 5)).toMatchObject({ enabled: false, why: expect.stringMatching(/npx/) });
  });
});

describe('SystemdWatchdog', () => {
  it('READY=1 once, WATCHDOG=1 every WATCHDOG_USEC / 2 while healthy, STOPPING=1 on stop and nothing after', async () => {
    const { clock, notifier, watchdog, health } = setup();
    watchdog.start();
    watchdog.start();
    clock.advance(5000);
    expect(notifier.times('READY=1')).toEqual([0]);
    expect(notifier.times('WATCHDOG=1')).toEqual([0, 1000, 2000, 3000, 4000, 5000]);
    expect(health.started).toBe(1);
    await watchdog.stop();
    expect(notifier.log.at(-2)?.what).toBe('STOPPING=1');
    expect(notifier.log.at(-1)?.what).toBe('STATUS=stopping');
    const count = notifier.log.length;
    clock.advance(10_000);
    expect(notifier.log.length).toBe(count);
    expect(clock.pending).toBe(0);
    expect(health.stopped).toBe(1);
    watchdog.start(); // no READY=1 a second time
    expect(notifier.times('READY=1')).toEqual([0]);
  });

  it('WATCHDOG=1 stops while unhealthy and resumes after recovery; the status says why', () => {
    const { clock, notifier, watchdog, sick, well, log } = setup();
    watchdog.start();
    clock.advance(2000);
    sick('event loop lag 1500 ms > 1000 ms');
    clock.advance(6000);
    well();
    clock.advance(2000);
    expect(notifier.times('WATCHDOG=1')).toEqual([0, 1000, 2000, 9000, 10_000]);
    expect(watchdog.counts).toEqual({ pings: 5, withheld: 6 });
    const statuses = notifier.statuses().map((s) => [s.at, s.what]);
    expect(statuses).toEqual([
      [0, 'STATUS=1 device: 1 ready; broker connected'],
      [3000, 'STATUS=1 device: 1 ready; broker connected; UNHEALTHY: event loop lag 1500 ms > 1000 ms'],
      [9000, 'STATUS=1 device: 1 ready; broker connected'],
    ]);
    expect(log.records.filter((r) => r.level === 'error').map((r) => r.msg)).toEqual([expect.stringMatching(/withholding WATCHDOG=1/)]);
    expect(log.records.some((r) => /healthy again/.test(r.msg ?? ''))).toBe(true);
  });

  it('notes (broker unreachable, a device being recovered) go into STATUS and the log, and WATCHDOG=1 never stops for them', () => {
    const { clock, notifier, watchdog, note, log, setStatus } = setup();
    watchdog.start();
    clock.advance(2000);
    setStatus('1 device: 1 ready; broker disconnected');
    note('broker session tether-gw down for 70 s (outbox keeps messages)');
    clock.advance(60_000);
    note();
    setStatus('1 device: 1 ready; broker connected');
    clock.advance(10_000);
    expect(notifier.times('WATCHDOG=1')).toHaveLength(73);
    expect(watchdog.counts.withheld).toBe(0);
    expect(notifier.statuses().map((s) => s.what)).toEqual([
      'STATUS=1 device: 1 ready; broker connected',
      'STATUS=1 device: 1 ready; broker disconnected; broker session tether-gw down for 70 s (outbox keeps messages)',
      'STATUS=1 device: 1 ready; broker connected',
    ]);
    expect(log.records.filter((r) => r.level === 'warn').map((r) => r.msg)).toEqual([expect.stringMatching(/^degraded, WATCHDOG=1 continues/)]);
    expect(log.records.filter((r) => r.level === 'error')).toEqual([]);
  });

  it('STATUS goes out on changes, at most one per statusMinIntervalMs, the newest text winning', () => {
    const { clock, notifier, watchdog, setStatus } = setup({});
    watchdog.start();
    setStatus('1 device: 1 lost; broker connected');
    clock.advance(1000); // 1 s after the last STATUS: held back
    setStatus('1 device: 1 init; broker connected');
    clock.advance(3000);
    expect(notifier.statuses()).toHaveLength(1);
    clock.advance(1000); // 5 s after the first: the newest goes out, 'lost' never did
    setStatus('1 device: 1 ready; broker connected');
    clock.advance(2000);
    setStatus('1 device: 1 init; broker connected'); // flapped back before it could be sent
    clock.advance(10_000);
    expect(notifier.statuses().map((s) => [s.at, s.what])).toEqual([
      [0, 'STATUS=1 device: 1 ready; broker connected'],
      [5000, 'STATUS=1 device: 1 init; broker connected'],
    ]);
    setStatus('1 device: 1 sleeping; broker connected'); // long after: goes out at the next poll
    clock.advance(1000);
    expect(notifier.statuses().at(-1)).toEqual({ at: 18_000, what: 'STATUS=1 device: 1 sleeping; broker connected' });
    // No WATCHDOG_USEC: no WATCHDOG=1 at all.
    expect(notifier.times('WATCHDOG=1')).toEqual([]);
  });

  it('without a watchdog the status line still shows unhealthiness', () => {
    const { clock, notifier, watchdog, sick } = setup({});
    watchdog.start();
    sick('event loop lag 1500 ms > 1000 ms');
    clock.advance(5000);
    expect(notifier.statuses().at(-1)?.what).toMatch(/UNHEALTHY: event loop lag/);
  });
});

describe('gatewayStatusLine', () => {
  const view = (states: string[], connected: boolean[]): GatewayView => {
    const sessions = connected.map((c, i) => ({ clientId: `c${i}`, connected: c }));
    return {
      config: { broker: {} as GatewayView['config']['broker'], devices: [] },
      mqtt: sessions[0]!,
      devices: states.map((state, i) => ({
        id: `d${i}`,
        mqtt: (sessions[i + 1] ?? sessions[0]!) as GatewayView['devices'][number]['mqtt'],
        link: { state } as unknown as GatewayView['devices'][number]['link'],
      })),
    };
  };
  it('counts device states and broker sessions in one line', () => {
    expect(gatewayStatusLine(view(['lost', 'ready', 'ready'], [true, true, true, true]))).toBe('3 devices: 2 ready, 1 lost; broker connected');
    expect(gatewayStatusLine(view(['init'], [false, false]))).toBe('1 device: 1 init; broker disconnected');
    expect(gatewayStatusLine(view(['sleeping', 'ready'], [true, false, true]))).toBe('2 devices: 1 ready, 1 sleeping; broker: 2/3 sessions connected');
  });
});
