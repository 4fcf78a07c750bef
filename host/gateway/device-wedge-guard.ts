import { silentLogger, type Logger } from '../log/logger.ts';
import { systemClock, type Clock } from '../time/clock.ts';
import { spreadEvery } from '../time/spread-every.ts';

/**
 * Finds device sessions that are wedged and recovers each on its own, by closing and
 * reopening its link, instead of having systemd restart the whole daemon (which would reopen
 * every port, and reset every Uno whose port pulses DTR on open).
 *
 * A session promises, in states `init` and `ready`, to hear from the board or declare it
 * `lost` within an explicit bound:
 *   - once it has heard anything since the link came up, by its failure detector's deadline
 *     (`lostDeadline`: last frame + interval x misses for the fixed detector);
 *   - in `init` before hearing anything, within handshakeTimeoutMs of entering `init`.
 * The bound used here is the later of `lostDeadline` and (entering the state +
 * handshakeTimeoutMs): the detector's deadline can be briefly stale or Infinity right after a
 * sleep or a reboot. A session still in `init` or `ready` more than `wedgeGraceMs` (default
 * 10 s) past that bound has broken its promise (its timers or its state machine are stuck):
 * it is *wedged*. `lost` is never wedged (an unplugged board is the board's problem: the
 * transport keeps retrying on its own), nor `sleeping` (a board may sleep until woken), nor
 * `disconnected` (stopped on purpose), nor a link lent out (`isPaused`, e.g. for flashing).
 *
 * Recovery: `link.pause('wedged: ...')` (the session goes to `init`, its timers and handshake
 * are reset, the port is closed) then `link.resume()` (the port reopens, a fresh handshake,
 * replay or verify). Each recovery is counted (`onRecovery`) and logged. If the device is
 * wedged again before it ever left `init`, the next recovery waits longer: wedgeGraceMs
 * doubling per consecutive recovery, up to `maxBackoffMs` (default 5 min), so a device that
 * a reopen does not cure is not reset in a loop. The HealthMonitor sees recoveries in flight
 * (`recovering`): one that does not finish within its bound is what only a restart cures.
 *
 * States are sampled every `sampleMs` (default 2 s), so state-since may start up to
 * `sampleMs` late: a wedge is recovered within the bound + wedgeGraceMs + sampleMs. At 500 ms
 * the sampling was ~2.5 % of the daemon's busy time at 9,900 boards (issue 15), for a grace of
 * 10 s. Each device is sampled and checked at its own phase of that period (spreadEvery), not
 * all in one turn: at 10,000 boards one pass over all of them took 4-14 ms of the event loop.
 */

export interface WedgeGuardLink {
  readonly state: string;
  readonly session: { readonly lostDeadline: number };
  /** True while the port is lent out on purpose (flashing): not wedged, whatever its state. */
  readonly isPaused?: boolean;
  pause(cause: string): Promise<void>;
  resume(): void;
}

export interface WedgeGuardDevice {
  id: string;
  /** The session's handshake bound (keepalive.handshakeTimeoutMs). */
  handshakeTimeoutMs: number;
  link: WedgeGuardLink;
}

export interface WedgeRecovery {
  id: string;
  /** The state it was stuck in. */
  state: string;
  /** How far past its lost bound it was (ms). */
  pastBoundMs: number;
  /** 1 for the first recovery of this device, and so on. */
  count: number;
}

export interface DeviceWedgeGuardOptions {
  devices: () => readonly WedgeGuardDevice[];
  clock?: Clock;
  logger?: Logger;
  /** How often states are sampled and checked (default 2000 ms). */
  sampleMs?: number;
  /** How far past its own bound a session in init/ready must be to count as wedged (default 10 000 ms). */
  wedgeGraceMs?: number;
  /** The longest wait between consecutive recoveries of a device that stays wedged (default 300 000 ms). */
  maxBackoffMs?: number;
  /** Called when a recovery starts (count it). */
  onRecovery?: (recovery: WedgeRecovery) => void;
}

interface Tracked {
  state: string;
  since: number;
  /** Recoveries that did not get the device out of init since. */
  consecutive: number;
  /** No recovery before this (Clock ms). */
  notBefore: number;
  total: number;
  /** The sample() that last saw it among the devices (those no longer there are forgotten). */
  sampled: number;
}

export class DeviceWedgeGuard {
  readonly sampleMs: number;
  readonly wedgeGraceMs: number;
  readonly maxBackoffMs: number;
  private readonly options: DeviceWedgeGuardOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly tracked = new Map<string, Tracked>();
  private samples = 0;
  private readonly inFlight = new Map<string, { startedAt: number; done: Promise<void> }>();
  private stopTicks: (() => void) | null = null;
  private stopped = false;

  constructor(options: DeviceWedgeGuardOptions) {
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? silentLogger;
    this.sampleMs = options.sampleMs ?? 2000;
    this.wedgeGraceMs = options.wedgeGraceMs ?? 10_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 300_000;
    for (const [name, v] of Object.entries({ sampleMs: this.sampleMs, wedgeGraceMs: this.wedgeGraceMs, maxBackoffMs: this.maxBackoffMs })) {
      if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${name} must be a number > 0, got ${String(v)}`);
    }
  }

  /** Recoveries in flight, for the health check. */
  get recovering(): Array<{ id: string; startedAt: number }> {
    return [...this.inFlight].map(([id, r]) => ({ id, startedAt: r.startedAt }));
  }

  /** Recoveries started so far, per device. */
  recoveries(id: string): number {
    return this.tracked.get(id)?.total ?? 0;
  }

  start(): void {
    if (this.stopTicks || this.stopped) return;
    this.sample();
    const devices = () => {
      // A new period: forget the devices not visited in the last one (no longer there).
      this.forgetUnvisited(this.samples);
      this.samples++;
      return this.options.devices();
    };
    this.stopTicks = spreadEvery(this.clock, this.sampleMs, devices, (device) => {
      const now = this.clock.now();
      this.sampleOne(device, now, this.samples);
      if (!this.stopped) this.checkOne(device, now);
    }, { unref: true });
  }

  /** No more checks; waits for recoveries in flight (each ends with the link's own close or resume). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopTicks?.();
    this.stopTicks = null;
    await Promise.all([...this.inFlight.values()].map((r) => r.done));
  }

  /** Samples the states and starts a recovery for each wedged device; returns those started. */
  check(): WedgeRecovery[] {
    const now = this.clock.now();
    this.sample(now);
    const started: WedgeRecovery[] = [];
    if (this.stopped) return started;
    for (const device of this.options.devices()) {
      const recovery = this.checkOne(device, now);
      if (recovery) started.push(recovery);
    }
    return started;
  }

  /** Starts a recovery of `device` if it is wedged. */
  private checkOne(device: WedgeGuardDevice, now: number): WedgeRecovery | null {
    const { link } = device;
    // Only init and ready can be wedged; the rest costs no lookup.
    const state = link.state;
    if (state !== 'init' && state !== 'ready') return null;
    const t = this.tracked.get(device.id);
    if (!t || (this.inFlight.size > 0 && this.inFlight.has(device.id)) || link.isPaused) return null;
    const entered = t.since + device.handshakeTimeoutMs;
    const deadline = link.session.lostDeadline;
    const bound = Number.isFinite(deadline) ? Math.max(deadline, entered) : entered;
    if (now <= bound + this.wedgeGraceMs || now < t.notBefore) return null;
    t.total++;
    t.consecutive++;
    const recovery: WedgeRecovery = { id: device.id, state: link.state, pastBoundMs: now - bound, count: t.total };
    this.recover(device, recovery, t);
    return recovery;
  }

  private recover(device: WedgeGuardDevice, recovery: WedgeRecovery, t: Tracked): void {
    const { link } = device;
    const startedAt = this.clock.now();
    const wait = Math.min(this.wedgeGraceMs * 2 ** (t.consecutive - 1), this.maxBackoffMs);
    this.log.warn(
      { device: device.id, state: recovery.state, pastBoundMs: Math.round(recovery.pastBoundMs), recoveries: recovery.count, consecutive: t.consecutive },
      `device ${device.id} wedged in ${recovery.state} (${Math.round(recovery.pastBoundMs / 1000)} s past its lost bound): closing and reopening its link (recovery ${recovery.count})`,
    );
    try {
      this.options.onRecovery?.(recovery);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'onRecovery threw');
    }
    const done = (async () => {
      try {
        await link.pause(`wedged in ${recovery.state}: reopening the link`);
      } catch (err) {
        this.log.error({ device: device.id, err: (err as Error).message }, `closing the link of ${device.id} failed: ${(err as Error).message}`);
      }
      // stop(): the gateway closes the links itself; resume() on a closed link does nothing.
      link.resume();
      const now = this.clock.now();
      // A fresh bound from now (the state may not have changed: init stays init), and the backoff.
      this.tracked.set(device.id, { ...t, state: link.state, since: now, notBefore: now + wait });
      this.log.info({ device: device.id, tookMs: Math.round(now - startedAt), nextRecoveryNotBeforeMs: wait }, `device ${device.id}: link reopened`);
    })().finally(() => this.inFlight.delete(device.id));
    this.inFlight.set(device.id, { startedAt, done });
  }

  /** Samples every device at once (a generation number rather than a Set of ids each time). */
  private sample(now = this.clock.now()): void {
    const generation = ++this.samples;
    for (const device of this.options.devices()) this.sampleOne(device, now, generation);
    this.forgetUnvisited(generation);
  }

  /** Forgets the devices not sampled in `generation` (gone from the list). */
  private forgetUnvisited(generation: number): void {
    // By key, not by [id, t] entry: an entry is an array, one per board per period.
    for (const id of this.tracked.keys()) if (this.tracked.get(id)!.sampled !== generation) this.tracked.delete(id);
  }

  private sampleOne(device: WedgeGuardDevice, now: number, generation: number): void {
    const known = this.tracked.get(device.id);
    if (known) known.sampled = generation;
    if (this.inFlight.size > 0 && this.inFlight.has(device.id)) return;
    const state = device.link.state;
    if (known && device.link.isPaused) {
      // Lent out (flashing): its bound starts when it is given back.
      known.state = state;
      known.since = now;
    } else if (!known) {
      this.tracked.set(device.id, { state, since: now, consecutive: 0, notBefore: 0, total: 0, sampled: generation });
    } else if (known.state !== state) {
      known.state = state;
      known.since = now;
      // It made progress out of init (handshake done, or honestly lost): the reopen worked.
      if (state !== 'init') known.consecutive = 0;
    }
  }
}
