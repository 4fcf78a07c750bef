import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';

/**
 * Is the daemon healthy, i.e. is a restart by systemd the cure for something? A restart costs
 * a lot: every serial port is reopened, and opening a USB port pulses DTR, which resets an Uno
 * (its outputs drop while the bootloader runs). So the verdict is "unhealthy" only for what
 * only a restart can fix, and everything else is reported as a note (in STATUS and the log)
 * without withholding WATCHDOG=1. Pure logic over its inputs, timed by the injected Clock.
 *
 * Unhealthy (WATCHDOG=1 withheld, systemd restarts the daemon after WatchdogSec):
 *
 * (a) Event loop stuck. A timer is due every `sampleMs`; the lag is how late it fires (or,
 *     while it is overdue, how overdue it is). Unhealthy while the latest lag exceeds
 *     `maxLagMs` (default 1000 ms). A loop blocked for good fires nothing at all, not even the
 *     watchdog pinger, and systemd's WatchdogSec catches that; this catches a loop that still
 *     turns, but so slowly that nothing is served on time.
 *
 * (b) An internal invariant broken: a device recovery (the gateway's DeviceWedgeGuard closing
 *     and reopening a wedged device's link) that has not finished within `recoveryTimeoutMs`
 *     (default 30 s). Closing and reopening a port takes milliseconds; one that never finishes
 *     means our own port handling is stuck, and only a fresh process clears that.
 *
 * Notes only (never a restart):
 *
 * - A broker session disconnected for longer than `brokerDownBoundMs` (default
 *   backoff.maxMs + keepaliveSec * 1000 + pingRespTimeoutMs, see brokerDownBound(): the
 *   longest a reachable broker takes to be found dead and reconnected). A broker outage is
 *   what the durable outbox is for: the daemon keeps the boards alive, queues what they
 *   publish and reconnects on its own; a restart would only reset every Uno.
 * - A device whose link is being reopened because its session was wedged (it broke its own
 *   promise to hear from the board or declare it lost). The guard recovers that one device
 *   (counted and logged); the others keep running.
 *
 * Broker down-since is taken from samples (every `sampleMs` and at each check()), so it may
 * start up to `sampleMs` late; the bounds are much longer.
 */

export interface BrokerHealthInput {
  /** Names the session in notes (the MQTT client id). */
  name: string;
  connected: boolean;
}

export interface RecoveryInput {
  /** The device whose link is being closed and reopened. */
  id: string;
  /** When the recovery started (Clock ms). */
  startedAt: number;
}

export interface HealthSources {
  brokers(): BrokerHealthInput[];
  /** Device recoveries in flight (DeviceWedgeGuard.recovering); none when omitted. */
  recoveries?(): RecoveryInput[];
}

export interface HealthMonitorOptions {
  sources: HealthSources;
  clock?: Clock;
  /** How often the lag timer is due and the inputs sampled (default 500 ms). */
  sampleMs?: number;
  /** Event loop lag above this is unhealthy (default 1000 ms). */
  maxLagMs?: number;
  /** A broker session disconnected longer than this is noted (default 60 000 ms; see brokerDownBound()). Never unhealthy. */
  brokerDownBoundMs?: number;
  /** A device recovery still running after this long is unhealthy (default 30 000 ms). */
  recoveryTimeoutMs?: number;
}

export interface HealthReport {
  /** False only for what a restart cures (event loop stuck, an internal invariant broken). */
  healthy: boolean;
  /** Why not, one short phrase each (empty when healthy). */
  reasons: string[];
  /** Degraded but not a restart's business (broker unreachable, a device being recovered). */
  notes: string[];
  /** Latest event loop lag (ms). */
  lagMs: number;
  /** Broker sessions down, with how long (ms). */
  brokersDown: Array<{ name: string; downForMs: number }>;
  /** Device recoveries in flight, with how long (ms). */
  recovering: Array<{ id: string; forMs: number }>;
}

/** The default broker bound for a config's broker settings (see the module comment). */
export function brokerDownBound(broker: { keepaliveSec: number; pingRespTimeoutMs: number; backoff: { maxMs: number } }): number {
  return broker.backoff.maxMs + broker.keepaliveSec * 1000 + broker.pingRespTimeoutMs;
}

export class HealthMonitor {
  readonly sampleMs: number;
  readonly maxLagMs: number;
  readonly brokerDownBoundMs: number;
  readonly recoveryTimeoutMs: number;
  private readonly sources: HealthSources;
  private readonly clock: Clock;
  private timer: TimerHandle | null = null;
  private dueAt = 0;
  private lastLagMs = 0;
  private readonly downSince = new Map<string, number>();

  constructor(options: HealthMonitorOptions) {
    this.sources = options.sources;
    this.clock = options.clock ?? systemClock;
    this.sampleMs = options.sampleMs ?? 500;
    this.maxLagMs = options.maxLagMs ?? 1000;
    this.brokerDownBoundMs = options.brokerDownBoundMs ?? 60_000;
    this.recoveryTimeoutMs = options.recoveryTimeoutMs ?? 30_000;
    const bounds = { sampleMs: this.sampleMs, maxLagMs: this.maxLagMs, brokerDownBoundMs: this.brokerDownBoundMs, recoveryTimeoutMs: this.recoveryTimeoutMs };
    for (const [name, v] of Object.entries(bounds)) {
      if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${name} must be a number > 0, got ${String(v)}`);
    }
  }

  get running(): boolean {
    return this.timer !== null;
  }

  start(): void {
    if (this.timer) return;
    this.sample();
    this.arm();
  }

  stop(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  /** The verdict now (samples the inputs first). */
  check(): HealthReport {
    const now = this.clock.now();
    this.sample(now);
    const reasons: string[] = [];
    const notes: string[] = [];

    const overdue = this.timer ? Math.max(0, now - this.dueAt) : 0;
    const lagMs = Math.max(this.lastLagMs, overdue);
    if (lagMs > this.maxLagMs) reasons.push(`event loop lag ${Math.round(lagMs)} ms > ${this.maxLagMs} ms`);

    const recovering: HealthReport['recovering'] = [];
    for (const { id, startedAt } of this.sources.recoveries?.() ?? []) {
      const forMs = now - startedAt;
      recovering.push({ id, forMs });
      if (forMs > this.recoveryTimeoutMs) {
        reasons.push(`reopening the link of device ${id} has not finished after ${Math.round(forMs / 1000)} s (> ${this.recoveryTimeoutMs / 1000} s)`);
      } else {
        notes.push(`device ${id} wedged: reopening its link`);
      }
    }

    const brokersDown: HealthReport['brokersDown'] = [];
    for (const [name, since] of this.downSince) {
      const downForMs = now - since;
      brokersDown.push({ name, downForMs });
      if (downForMs > this.brokerDownBoundMs) {
        notes.push(`broker session ${name} down for ${Math.round(downForMs / 1000)} s (outbox keeps messages)`);
      }
    }
    return { healthy: reasons.length === 0, reasons, notes, lagMs, brokersDown, recovering };
  }

  private sample(now = this.clock.now()): void {
    const seen = new Set<string>();
    for (const broker of this.sources.brokers()) {
      seen.add(broker.name);
      if (broker.connected) this.downSince.delete(broker.name);
      else if (!this.downSince.has(broker.name)) this.downSince.set(broker.name, now);
    }
    for (const name of [...this.downSince.keys()]) if (!seen.has(name)) this.downSince.delete(name);
  }

  private arm(): void {
    this.dueAt = this.clock.now() + this.sampleMs;
    this.timer = this.clock.setTimeout(this.tick, this.sampleMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private tick = (): void => {
    const now = this.clock.now();
    this.lastLagMs = Math.max(0, now - this.dueAt);
    this.sample(now);
    this.arm();
  };
}
