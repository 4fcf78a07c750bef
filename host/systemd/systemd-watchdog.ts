import { silentLogger, type Logger } from '../log/logger.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import type { HealthReport } from './health-monitor.ts';

/** What the watchdog sends through (SdNotify, or a fake in tests). */
export interface WatchdogNotifier {
  readonly enabled: boolean;
  ready(): void;
  status(text: string): void;
  watchdog(): void;
  stopping(): void;
  /** Resolves once everything asked for was sent (or failed). */
  idle(): Promise<void>;
}

export interface WatchdogHealth {
  check(): HealthReport;
  start?(): void;
  stop?(): void;
}

export interface SystemdWatchdogOptions {
  notifier: WatchdogNotifier;
  health: WatchdogHealth;
  /** One line describing the daemon now, e.g. "3 devices: 2 ready, 1 lost; broker connected". */
  status: () => string;
  /** WATCHDOG_USEC and WATCHDOG_PID as systemd sets them (default process.env). */
  env?: NodeJS.ProcessEnv;
  pid?: number;
  clock?: Clock;
  logger?: Logger;
  /** How often the status line is recomputed (default 1000 ms). */
  statusPollMs?: number;
  /** At most one STATUS per this long (default 5000 ms); the newest text goes out when allowed. */
  statusMinIntervalMs?: number;
  /** stop() waits this long at most for STOPPING=1 to go out (default 3000 ms). */
  stopTimeoutMs?: number;
}

export type WatchdogSetting = { enabled: true; usec: number; intervalMs: number } | { enabled: false; why: string };

/**
 * sd_watchdog_enabled(3) semantics: WATCHDOG_USEC (a positive integer) enables it, unless
 * WATCHDOG_PID is set to another process. WATCHDOG=1 is then due every WATCHDOG_USEC / 2.
 */
export function watchdogSetting(env: NodeJS.ProcessEnv, pid: number): WatchdogSetting {
  const raw = env.WATCHDOG_USEC;
  if (raw === undefined || raw === '') return { enabled: false, why: 'WATCHDOG_USEC is not set (no WatchdogSec= in the unit)' };
  if (!/^\d+$/.test(raw) || Number(raw) <= 0) return { enabled: false, why: `WATCHDOG_USEC is not a positive integer (${raw})` };
  const wpid = env.WATCHDOG_PID;
  if (wpid !== undefined && wpid !== '' && Number(wpid) !== pid) {
    return {
      enabled: false,
      why: `WATCHDOG_PID ${wpid} is not this process (${pid}): run node directly in ExecStart=, not through a wrapper such as npx`,
    };
  }
  const usec = Number(raw);
  return { enabled: true, usec, intervalMs: Math.max(1, Math.floor(usec / 2000)) };
}

/**
 * Talks to systemd for a Type=notify service: READY=1 once started, STATUS=<one line> on
 * changes (rate-limited), WATCHDOG=1 every WATCHDOG_USEC / 2 but only while the health check
 * says healthy, STOPPING=1 on shutdown. Healthy means "a restart would not help": only a
 * daemon that is alive but stuck (event loop, an internal invariant) stops sending WATCHDOG=1
 * and is restarted by systemd; a broker outage or a wedged device is a note in STATUS (see
 * HealthMonitor). One that is blocked for good sends nothing anyway.
 */
export class SystemdWatchdog {
  readonly watchdog: WatchdogSetting;
  private readonly notifier: WatchdogNotifier;
  private readonly health: WatchdogHealth;
  private readonly statusOf: () => string;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly statusPollMs: number;
  private readonly statusMinIntervalMs: number;
  private readonly stopTimeoutMs: number;
  private pingTimer: TimerHandle | null = null;
  private statusTimer: TimerHandle | null = null;
  private state: 'idle' | 'running' | 'stopped' = 'idle';
  private readySent = false;
  private lastStatus: string | null = null;
  private lastStatusAt = -Infinity;
  private unhealthy: string[] | null = null;
  /** Degraded, not a restart's business (the latest check's notes). */
  private notes: string[] = [];
  private pings = 0;
  private withheld = 0;

  constructor(options: SystemdWatchdogOptions) {
    this.notifier = options.notifier;
    this.health = options.health;
    this.statusOf = options.status;
    this.clock = options.clock ?? systemClock;
    this.log = (options.logger ?? silentLogger).child({ component: 'systemd' });
    this.statusPollMs = options.statusPollMs ?? 1000;
    this.statusMinIntervalMs = options.statusMinIntervalMs ?? 5000;
    this.stopTimeoutMs = options.stopTimeoutMs ?? 3000;
    this.watchdog = watchdogSetting(options.env ?? process.env, options.pid ?? process.pid);
  }

  /** WATCHDOG=1 sent / withheld (unhealthy) so far. */
  get counts(): { pings: number; withheld: number } {
    return { pings: this.pings, withheld: this.withheld };
  }

  /** Call once the daemon is up: READY=1 (only ever once), the first STATUS, and the pinger. */
  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.health.start?.();
    if (!this.readySent) {
      this.readySent = true;
      this.notifier.ready();
    }
    this.updateStatus(true);
    if (this.watchdog.enabled) {
      this.log.info({ intervalMs: this.watchdog.intervalMs, usec: this.watchdog.usec }, `systemd watchdog: WATCHDOG=1 every ${this.watchdog.intervalMs} ms while healthy`);
      this.ping();
    } else {
      this.log.info({ why: this.watchdog.why }, 'systemd watchdog off');
    }
    this.scheduleStatus();
  }

  /** STOPPING=1, no more pings; resolves once it went out (bounded by stopTimeoutMs). */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    const wasRunning = this.state === 'running';
    this.state = 'stopped';
    if (this.pingTimer) this.clock.clearTimeout(this.pingTimer);
    if (this.statusTimer) this.clock.clearTimeout(this.statusTimer);
    this.pingTimer = this.statusTimer = null;
    this.health.stop?.();
    if (!wasRunning) return;
    this.notifier.stopping();
    this.notifier.status('stopping');
    let timer: TimerHandle | undefined;
    await Promise.race([
      this.notifier.idle(),
      new Promise<void>((resolve) => {
        timer = this.clock.setTimeout(resolve, this.stopTimeoutMs);
      }),
    ]);
    if (timer !== undefined) this.clock.clearTimeout(timer);
  }

  private ping = (): void => {
    this.pingTimer = null;
    if (this.state !== 'running' || !this.watchdog.enabled) return;
    const report = this.health.check();
    this.noteChanges(report.notes ?? []);
    if (report.healthy) {
      this.pings++;
      this.notifier.watchdog();
      if (this.unhealthy) {
        this.log.info({ withheld: this.withheld }, 'healthy again: WATCHDOG=1 resumes');
        this.unhealthy = null;
        this.updateStatus(true);
      }
    } else {
      this.withheld++;
      if (!this.unhealthy) {
        this.log.error(
          { reasons: report.reasons },
          `unhealthy: withholding WATCHDOG=1, systemd restarts the daemon if this lasts (${report.reasons.join('; ')})`,
        );
        this.unhealthy = report.reasons;
        this.updateStatus(true);
      }
      this.unhealthy = report.reasons;
    }
    this.pingTimer = this.clock.setTimeout(this.ping, this.watchdog.intervalMs);
  };

  private scheduleStatus(): void {
    if (this.state !== 'running') return;
    this.statusTimer = this.clock.setTimeout(() => {
      this.statusTimer = null;
      this.updateStatus(false);
      this.scheduleStatus();
    }, this.statusPollMs);
  }

  /** Sends the status line if it changed and the rate limit allows (`urgent` skips the limit once). */
  private updateStatus(urgent: boolean): void {
    if (this.state !== 'running') return;
    let text: string;
    try {
      text = this.statusOf();
    } catch (err) {
      text = `status unavailable: ${err instanceof Error ? err.message : String(err)}`;
    }
    let reasons = this.unhealthy;
    if (!this.watchdog.enabled) {
      const report = this.health.check();
      reasons = report.reasons;
      this.notes = report.notes ?? [];
    }
    if (reasons && reasons.length > 0) text += `; UNHEALTHY: ${reasons.join('; ')}`;
    if (this.notes.length > 0) text += `; ${this.notes.join('; ')}`;
    if (text === this.lastStatus) return;
    const now = this.clock.now();
    if (!urgent && now - this.lastStatusAt < this.statusMinIntervalMs) return; // a later poll sends it
    this.lastStatus = text;
    this.lastStatusAt = now;
    this.notifier.status(text);
  }

  /** Notes (broker unreachable, a device being recovered) are logged when they change, never withhold WATCHDOG=1. */
  private noteChanges(notes: string[]): void {
    const key = (n: string[]) => n.map((x) => x.replace(/\d+ s\b/g, 'N s')).join('\n');
    if (key(notes) === key(this.notes)) {
      this.notes = notes;
      return;
    }
    if (notes.length > 0) this.log.warn({ notes }, `degraded, WATCHDOG=1 continues (a restart would not help): ${notes.join('; ')}`);
    else this.log.info({}, 'no longer degraded');
    this.notes = notes;
  }
}
