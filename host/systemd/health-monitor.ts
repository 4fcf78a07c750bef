import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';

/**
 * Is the daemon healthy, i.e. doing its job as opposed to alive but stuck? Pure logic over
 * three inputs read through HealthSources, timed by the injected Clock:
 *
 * (a) Event loop responsive. A timer is due every `sampleMs`; the lag is how late it fires
 *     (or, while it is overdue, how overdue it is). Unhealthy while the latest lag exceeds
 *     `maxLagMs` (default 1000 ms). A loop blocked for good fires nothing at all, not even the
 *     watchdog pinger, and systemd's WatchdogSec catches that; this catches a loop that still
 *     turns, but so slowly that nothing is served on time.
 *
 * (b) Broker leg up. Every MQTT session (the gateway's and each board's) is either connected,
 *     or has been disconnected for at most `brokerDownBoundMs`. BrokerSession promises that
 *     bound to a healthy daemon with a reachable broker: a dead link is dropped after at most
 *     keepaliveSec * 1000 + pingRespTimeoutMs of silence (while it still reads as connected),
 *     and then the next attempt starts within backoff.maxMs and gets its CONNACK within
 *     connectTimeoutMs (default keepaliveSec * 1000 + pingRespTimeoutMs). So the default
 *     bound (see brokerDownBound()) is backoff.maxMs + keepaliveSec * 1000 + pingRespTimeoutMs.
 *     Down longer than that, the leg is not coming back by itself as it should, and a restart
 *     is the cure systemd can offer (it also helps nothing if the broker itself is down: the
 *     durable outbox keeps what was queued).
 *
 * (c) No device session wedged. DeviceSession promises, in states `init` and `ready`, to hear
 *     from the board or declare it `lost` within an explicit bound:
 *       - once it has heard anything since the link came up, by its failure detector's
 *         deadline (`lostDeadline`: last frame + interval x misses for the fixed detector);
 *       - in `init` before hearing anything, within handshakeTimeoutMs of entering `init`.
 *     The bound used here is the later of `lostDeadline` and (entering the state +
 *     handshakeTimeoutMs): the detector's deadline can be briefly stale or Infinity right after
 *     a sleep or a reboot (it is reset, and refreshed by the next PONG). A session still in
 *     `init` or `ready` more than `wedgeGraceMs` (default 10 s) past that bound has broken its
 *     promise: its timers or its state machine are stuck, and it is *wedged*. `lost` is never wedged (an unplugged board is the board's problem, not the
 *     daemon's: the transport keeps retrying on its own), nor `sleeping` (a board may sleep
 *     until woken) nor `disconnected` (stopped on purpose).
 *
 * Broker down-since and device state-since are taken from samples (every `sampleMs` and at
 * each check()), so they may start up to `sampleMs` late; the bounds are much longer.
 */

export interface BrokerHealthInput {
  /** Names the session in reasons (the MQTT client id). */
  name: string;
  connected: boolean;
}

export interface DeviceHealthInput {
  id: string;
  /** DeviceSession state: init, ready, sleeping, lost, disconnected. */
  state: string;
  /** DeviceSession.lostDeadline on the same Clock scale; Infinity before anything was heard. */
  lostDeadline: number;
  /** The session's handshake bound (keepalive.handshakeTimeoutMs). */
  handshakeTimeoutMs: number;
}

export interface HealthSources {
  brokers(): BrokerHealthInput[];
  devices(): DeviceHealthInput[];
}

export interface HealthMonitorOptions {
  sources: HealthSources;
  clock?: Clock;
  /** How often the lag timer is due and the inputs sampled (default 500 ms). */
  sampleMs?: number;
  /** Event loop lag above this is unhealthy (default 1000 ms). */
  maxLagMs?: number;
  /** A broker session disconnected longer than this is unhealthy (default 60 000 ms; see brokerDownBound()). */
  brokerDownBoundMs?: number;
  /** How far past its own bound a session in init/ready must be to count as wedged (default 10 000 ms). */
  wedgeGraceMs?: number;
}

export interface HealthReport {
  healthy: boolean;
  /** Why not, one short phrase each (empty when healthy). */
  reasons: string[];
  /** Latest event loop lag (ms). */
  lagMs: number;
  /** Broker sessions down, with how long (ms). */
  brokersDown: Array<{ name: string; downForMs: number }>;
  /** Wedged devices, with how long past their bound (ms). */
  wedged: Array<{ id: string; state: string; overdueMs: number }>;
}

/** The default broker bound for a config's broker settings (see the module comment). */
export function brokerDownBound(broker: { keepaliveSec: number; pingRespTimeoutMs: number; backoff: { maxMs: number } }): number {
  return broker.backoff.maxMs + broker.keepaliveSec * 1000 + broker.pingRespTimeoutMs;
}

export class HealthMonitor {
  readonly sampleMs: number;
  readonly maxLagMs: number;
  readonly brokerDownBoundMs: number;
  readonly wedgeGraceMs: number;
  private readonly sources: HealthSources;
  private readonly clock: Clock;
  private timer: TimerHandle | null = null;
  private dueAt = 0;
  private lastLagMs = 0;
  private readonly downSince = new Map<string, number>();
  private readonly stateSince = new Map<string, { state: string; since: number }>();

  constructor(options: HealthMonitorOptions) {
    this.sources = options.sources;
    this.clock = options.clock ?? systemClock;
    this.sampleMs = options.sampleMs ?? 500;
    this.maxLagMs = options.maxLagMs ?? 1000;
    this.brokerDownBoundMs = options.brokerDownBoundMs ?? 60_000;
    this.wedgeGraceMs = options.wedgeGraceMs ?? 10_000;
    for (const [name, v] of Object.entries({ sampleMs: this.sampleMs, maxLagMs: this.maxLagMs, brokerDownBoundMs: this.brokerDownBoundMs, wedgeGraceMs: this.wedgeGraceMs })) {
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

    const overdue = this.timer ? Math.max(0, now - this.dueAt) : 0;
    const lagMs = Math.max(this.lastLagMs, overdue);
    if (lagMs > this.maxLagMs) reasons.push(`event loop lag ${Math.round(lagMs)} ms > ${this.maxLagMs} ms`);

    const brokersDown: HealthReport['brokersDown'] = [];
    for (const [name, since] of this.downSince) {
      const downForMs = now - since;
      brokersDown.push({ name, downForMs });
      if (downForMs > this.brokerDownBoundMs) {
        reasons.push(`broker session ${name} down for ${Math.round(downForMs / 1000)} s > ${this.brokerDownBoundMs / 1000} s`);
      }
    }

    const wedged: HealthReport['wedged'] = [];
    for (const device of this.sources.devices()) {
      const bound = this.boundOf(device);
      if (bound === null) continue;
      const overdueMs = now - (bound + this.wedgeGraceMs);
      if (overdueMs > 0) {
        wedged.push({ id: device.id, state: device.state, overdueMs });
        reasons.push(`device ${device.id} wedged in ${device.state} (${Math.round((now - bound) / 1000)} s past its lost bound)`);
      }
    }
    return { healthy: reasons.length === 0, reasons, lagMs, brokersDown, wedged };
  }

  /** When the session must have heard from the board or declared it lost; null when not bounded. */
  private boundOf(device: DeviceHealthInput): number | null {
    if (device.state !== 'init' && device.state !== 'ready') return null;
    const since = this.stateSince.get(device.id)?.since ?? this.clock.now();
    const entered = since + device.handshakeTimeoutMs;
    return Number.isFinite(device.lostDeadline) ? Math.max(device.lostDeadline, entered) : entered;
  }

  private sample(now = this.clock.now()): void {
    const seen = new Set<string>();
    for (const broker of this.sources.brokers()) {
      seen.add(broker.name);
      if (broker.connected) this.downSince.delete(broker.name);
      else if (!this.downSince.has(broker.name)) this.downSince.set(broker.name, now);
    }
    for (const name of [...this.downSince.keys()]) if (!seen.has(name)) this.downSince.delete(name);

    const devices = new Set<string>();
    for (const device of this.sources.devices()) {
      devices.add(device.id);
      const known = this.stateSince.get(device.id);
      if (!known || known.state !== device.state) this.stateSince.set(device.id, { state: device.state, since: now });
    }
    for (const id of [...this.stateSince.keys()]) if (!devices.has(id)) this.stateSince.delete(id);
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
