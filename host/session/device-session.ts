import { EventEmitter } from 'node:events';
import type { Capabilities, DeviceConfig, DeviceMessage, HostMessage, MessageOf, ResetCause } from '../../shared/protocol/messages.ts';
import { effectiveWatchdogMs, MAX_U14, MIN_BEAT_INTERVAL_MS } from '../../shared/protocol/constants.ts';
import { rearm, systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import { silentLogger, type Logger } from '../log/logger.ts';
import { FixedTimeoutDetector, type FailureDetector } from './failure-detector.ts';
import { PingSequencer, PONG_REORDERED, strayReason } from './ping-sequencer.ts';
import { RttStats } from './rtt-stats.ts';
import type { LeaseRegistry } from './lease-registry.ts';

export type SessionState = 'init' | 'ready' | 'sleeping' | 'lost' | 'disconnected';
export type Hello = MessageOf<'hello'>;

export interface StateChange {
  from: SessionState;
  to: SessionState;
  cause: string;
  at: number;
}

export interface RebootInfo {
  /** The device's boot id (null for a plain Firmata board, which has none). */
  bootId: number | null;
  previousBootId: number | null;
  causes: ResetCause[];
  stateSurvived: boolean;
}

/** What the device speaks: our keepalive extension, plain Firmata only, or not known yet. */
export type DeviceProtocol = 'unknown' | 'tether' | 'firmata';

export interface DeviceSessionOptions {
  clock?: Clock;
  logger?: Logger;
  /** PING period (default 1000 ms). */
  pingIntervalMs?: number;
  /** Missed PONG periods before `lost` (default 3): lost no later than interval x misses after the last PONG. */
  misses?: number;
  /** Overrides the fixed interval x misses detector (e.g. a PhiAccrualDetector for TCP bridges). */
  detector?: FailureDetector;
  /** Lease sent with each PING while a keep-awake lease is held (default (misses + 1) x interval). */
  leaseMs?: number;
  /**
   * Ask a device whose HELLO has the beats capability to send its heartbeat itself (BEATS), and
   * renew that only every `beatRenewIntervals` intervals instead of a PING every interval (default
   * true): on a fleet, the PING's write was the largest part of the host's cost per board.
   */
  beats?: boolean;
  /**
   * Intervals between BEATS renewals while nothing needs a PING every interval (default 30; at
   * most a third of the device's host timeout, so that it never takes the host for lost).
   */
  beatRenewIntervals?: number;
  /**
   * Whether something needs a PONG every interval now (writes waiting for the PONG that proves
   * the board read them): beats are then renewed every interval, as PINGs would be sent.
   */
  pingsWanted?(): boolean;
  /** How long past its announced wake time a sleeping device may stay silent before it is `lost` (default 2000 ms). */
  sleepGraceMs?: number;
  /**
   * How long after the link opens a silent device is still `init`, not `lost` (default
   * DEFAULT_HANDSHAKE_TIMEOUT_MS): opening a USB serial port resets an Uno (DTR); its bootloader
   * waits about 1 s before starting the app, and StandardFirmata then blinks its version for
   * about 2 s before it answers anything.
   */
  handshakeTimeoutMs?: number;
  /**
   * HELLO_REQUESTs a device must leave unanswered, each proven by the answer to a Firmata
   * version query sent right after it, before it is taken as plain Firmata (default 3).
   */
  helloAttempts?: number;
  /**
   * Device configuration to keep on the device: after each HELLO it is compared with what the
   * device reports (HELLO, then CONFIG_GET for the rest) and sent (CONFIG_SET) only if it
   * differs, so flash and EEPROM are written only on a real change. What the device's HELLO
   * capabilities say it cannot do is clamped (policy sleep -> stay, a watchdog -> 0), with one
   * warning.
   */
  deviceConfig?: DeviceConfig;
  leases?: LeaseRegistry;
  /** Sends a keepalive frame to the device. */
  send(message: HostMessage): void;
  /** Sends a PING (as send() would `{ type: 'ping', seq, leaseMs }`), without a message object. */
  sendPing?(seq: number, leaseMs: number): void;
  /**
   * Each RTT sample, as the 'rtt' event carries it, called directly (every PONG of every board:
   * an emit makes an argument array each time). The event is emitted too, if anyone listens.
   */
  onRtt?(rttMs: number): void;
  /** Sends raw bytes (the wake byte, Firmata version queries). */
  sendRaw(bytes: number[]): void;
  /**
   * Brings the device back to the recorded state after a handshake; the session is `ready`
   * only after it resolves. `rebooted` is false on the first contact with a running device.
   */
  restore?(hello: Hello, rebooted: boolean): Promise<void>;
  /**
   * The same for a plain Firmata board: replay the recorded pins after a reboot, otherwise
   * check them and replay if the board forgot them; resolve once the board has applied it
   * (`forgot`: it had forgotten them). The session is `ready` only after it resolves.
   */
  restorePlain?(rebooted: boolean): Promise<{ forgot: boolean }>;
}

export interface SessionCounters {
  /** PINGs and BEATS sent. */
  pingsSent: number;
  pongs: number;
  /** BEATs: heartbeats the device sent itself. */
  beats: number;
  /** PONGs that matched no outstanding PING (unknown, duplicated). */
  strayPongs: number;
  reboots: Record<ResetCause | 'unknown', number>;
  lostCount: number;
  /** Host-measured time the device spent announced as sleeping. */
  asleepMs: number;
  deviceErrors: number;
}

interface DeviceSessionEvents {
  state: [StateChange];
  rtt: [number];
  hello: [Hello];
  reboot: [RebootInfo];
  /** The device woke up (AWAKE): queued commands can go now. */
  awake: [];
  /** The device is about to sleep (SLEEPING). */
  sleeping: [durationMs: number];
  /** Nothing came back within the handshake time after the link came up (the state is `lost` either way). */
  unanswered: [cause: string];
}

const FIRMATA_REPORT_VERSION = 0xf9;
/** See DeviceSessionOptions.handshakeTimeoutMs: about 3.2 s of silence for StandardFirmata after DTR, plus margin. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;
/** What a Firmata answer was, as far as the session cares. */
export type FirmataContact = 'version' | 'other';
const WAKE_BYTE = 0x00;
/** A deadline timer this late means the event loop was blocked: its sockets are read before it is believed. */
const LATE_DEADLINE_MS = 100;

/**
 * One board's liveness: a state machine (init, ready, sleeping, lost, disconnected) fed
 * by link events and device messages, that PINGs on a timer, matches PONGs, decides `lost`
 * with a failure detector with an explicit bound, and tells asleep from gone.
 * No I/O of its own: it sends through the callbacks it was given, times through its Clock.
 */
export class DeviceSession extends EventEmitter<DeviceSessionEvents> {
  private current: SessionState = 'init';
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly pingIntervalMs: number;
  private readonly leaseMs: number;
  private readonly sleepGraceMs: number;
  private readonly helloAttempts: number;
  private readonly beatRenewIntervalsMs: number;
  /** Between BEATS renewals now: beatRenewIntervalsMs, shortened by the device's host timeout. */
  private beatRenewMs: number;
  private readonly misses: number;
  readonly detector: FailureDetector;
  readonly rtt = new RttStats();
  private readonly sequencer = new PingSequencer();
  private pingTimer: TimerHandle | undefined;
  private deadlineTimer: TimerHandle | undefined;
  /**
   * The last handles of the PING tick and the deadline, run or cleared: set again through
   * rearm(), a shared timer heap reuses them (no timer object per PING and per bound).
   */
  private spentPingTimer: TimerHandle | undefined;
  private spentDeadlineTimer: TimerHandle | undefined;
  /** When deadlineTimer is due (Clock ms). */
  private deadlineAt = Infinity;
  /** The deadline fired late and is being looked at again after one turn of the event loop. */
  private deadlineDeferred = false;
  private linkIsUp = false;
  /** The device sends BEATs (its HELLO has the capability, and beats are wanted): PINGs are BEATS renewals. */
  private beatsOn = false;
  /** The last BEATS renewal was answered (a PONG matched a PING since it went out). */
  private renewalAnswered = true;
  /** Renewals in a row left unanswered: the device's input is not reaching it. */
  private renewalsUnanswered = 0;
  /** When the next BEATS renewal is due (Clock ms). */
  private nextRenewalAt = -Infinity;
  /** When the PING tick is due (Clock ms): hurry() sets it sooner. */
  private tickAt = Infinity;
  private protocolValue: DeviceProtocol = 'unknown';
  private bootIdValue: number | null = null;
  private lastHello: Hello | null = null;
  /**
   * Handshake progress for the current link / boot: HELLO seen (plain Firmata: contact) and
   * restore finished.
   */
  private handshake: 'waiting-hello' | 'restoring' | 'done' = 'waiting-hello';
  /** HELLO_REQUESTs proven unanswered (a later Firmata version query was answered first). */
  private unansweredHellos = 0;
  /** A HELLO_REQUEST followed by a Firmata version query went out; no version answer yet. */
  private probeOutstanding = false;
  /** Anything valid (frame or Firmata answer) arrived since the link came up. */
  private contactSinceLinkUp = false;
  /** The plain-Firmata restore running was started by a reboot (its announcement). */
  private restoringAfterReboot = false;
  private plainLogged = false;
  /** The configuration to check against the device's CONFIG answer (after a CONFIG_GET). */
  private configToCheck: DeviceConfig | null = null;
  /** Clamps already warned about (once each; made by the first). */
  private clampWarnings: Set<string> | null = null;
  private restoreGeneration = 0;
  private sleepStartedAt: number | null = null;
  /** Someone asked for the board while it sleeps: keep sending the wake byte until AWAKE. */
  private wakeWanted = false;
  private sleepDeadline = Infinity;
  /**
   * -Infinity until the first frame: a number field from the start, so that V8 keeps it as a
   * double updated in place (null first made it a tagged field, and every PONG's store of a
   * fractional performance.now() a new heap number that lived a second: promoted garbage).
   */
  private lastSeenAt = -Infinity;
  /** When the link last came up: `init` must hear something within the handshake time after it. */
  private linkUpAt = -Infinity;
  readonly counters: SessionCounters = {
    pingsSent: 0,
    pongs: 0,
    beats: 0,
    strayPongs: 0,
    reboots: { 'power-on': 0, external: 0, 'brown-out': 0, watchdog: 0, unknown: 0 },
    lostCount: 0,
    asleepMs: 0,
    deviceErrors: 0,
  };
  private readonly onLeaseChange = (held: boolean) => this.leaseChanged(held);

  constructor(private readonly options: DeviceSessionOptions) {
    super();
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? silentLogger;
    this.pingIntervalMs = options.pingIntervalMs ?? 1000;
    const misses = options.misses ?? 3;
    this.misses = misses;
    this.detector = options.detector ?? new FixedTimeoutDetector({ intervalMs: this.pingIntervalMs, misses });
    this.leaseMs = options.leaseMs ?? (misses + 1) * this.pingIntervalMs;
    this.sleepGraceMs = options.sleepGraceMs ?? 2000;
    this.helloAttempts = options.helloAttempts ?? 3;
    this.beatRenewIntervalsMs = (options.beatRenewIntervals ?? 30) * this.pingIntervalMs;
    this.beatRenewMs = this.beatRenewIntervalsMs;
    options.leases?.on('change', this.onLeaseChange);
  }

  get state(): SessionState {
    return this.current;
  }

  get protocol(): DeviceProtocol {
    return this.protocolValue;
  }

  get bootId(): number | null {
    return this.bootIdValue;
  }

  get hello(): Hello | null {
    return this.lastHello;
  }

  /** Wall-clock-free time (Clock ms) of the last frame from the device. */
  get lastSeen(): number | null {
    return this.lastSeenAt === -Infinity ? null : this.lastSeenAt;
  }

  /** The explicit bound: at the latest this long after the last PONG, the device is `lost`. */
  get lostDeadline(): number {
    return this.detector.deadline();
  }

  // ---- inputs -------------------------------------------------------------------------

  /** The transport opened: start the handshake. */
  linkUp(): void {
    if (this.current === 'disconnected') return;
    this.linkIsUp = true;
    this.linkUpAt = this.clock.now();
    this.handshake = 'waiting-hello';
    // Asked again on every link: the board behind the port may have been replaced or reflashed.
    this.protocolValue = 'unknown';
    this.beatsOn = false;
    this.unansweredHellos = 0;
    this.probeOutstanding = false;
    this.contactSinceLinkUp = false;
    this.detector.reset();
    // A board that is `lost` stays `lost` until it answers on the new link: a bridge (or a
    // relay in front of it) accepts a connection whatever the path behind it does, so each
    // reopen attempt during an outage would otherwise show `init` and then `lost` again.
    if (this.current === 'lost') this.log.debug({}, 'link up: the board stays lost until it answers');
    else this.transition('init', 'link up');
    // Nothing heard at all within the handshake time after opening: lost (or, if lost already, unanswered).
    this.armDeadline(this.clock.now() + (this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS));
    this.tick();
  }

  /** The transport dropped (unplugged, TCP reset): the device is unreachable. */
  linkDown(reason: string): void {
    if (this.current === 'disconnected') return;
    this.linkIsUp = false;
    this.clearTimers();
    this.endSleep();
    this.becomeLost(`link down: ${reason}`);
  }

  /** A keepalive frame from the device. */
  receive(message: DeviceMessage): void {
    const now = this.contact();
    if (now === null) return;
    switch (message.type) {
      case 'hello':
        this.onHello(message);
        break;
      case 'pong':
        this.onPong(message.seq, message.bootId, now);
        break;
      case 'beat':
        this.onBeat(message.bootId, now);
        break;
      case 'sleeping':
        this.onSleeping(message.durationMs, now);
        break;
      case 'awake':
        this.onAwake(now);
        break;
      case 'config':
        this.onConfig(message.config);
        this.heartbeat(now);
        break;
      case 'error':
        this.counters.deviceErrors++;
        this.log.warn({ code: message.code, type: message.offendingType }, 'device rejected a frame');
        this.heartbeat(now);
        break;
      default:
        this.heartbeat(now);
    }
  }

  /**
   * A PONG, as receive() takes it, from its fields (the link's fast path: no message object
   * is made for the PONG every board sends every interval).
   */
  receivePong(seq: number, bootId: number): void {
    const now = this.contact();
    if (now !== null) this.onPong(seq, bootId, now);
  }

  /** A BEAT, as receive() takes it, from its fields (the link's fast path, as receivePong). */
  receiveBeat(bootId: number): void {
    const now = this.contact();
    if (now !== null) this.onBeat(bootId, now);
  }

  /** A frame from the device: it is there and speaks our protocol. The time, or null once closed. */
  private contact(): number | null {
    if (this.current === 'disconnected') return null;
    const now = this.clock.now();
    this.lastSeenAt = now;
    this.contactSinceLinkUp = true;
    this.protocolValue = 'tether';
    this.probeOutstanding = false;
    return now;
  }

  /**
   * A valid Firmata message (not a keepalive frame) arrived: contact, whatever the board runs.
   * While the protocol is unknown, a version answer that overtook the HELLO_REQUEST sent just
   * before its query proves that request went unanswered (a board processes its input in order).
   */
  firmataActivity(kind: FirmataContact = 'other'): void {
    if (this.current === 'disconnected') return;
    const now = this.clock.now();
    this.lastSeenAt = now;
    this.contactSinceLinkUp = true;
    this.heartbeat(now);
    if (this.protocolValue === 'unknown') {
      if (kind !== 'version' || !this.probeOutstanding || !this.linkIsUp) return;
      this.probeOutstanding = false;
      if (++this.unansweredHellos >= this.helloAttempts) this.becomePlain();
      else this.requestHello(); // the next probe at once: answers decide, not the tick
      return;
    }
    if (this.protocolValue === 'firmata' && this.handshake === 'waiting-hello') this.startPlainRestore(false);
  }

  /**
   * Something a plain Firmata board sent may mean it rebooted, or may not (an unasked-looking
   * firmware name while the program had asked for one): check its pins now (restorePlain(false));
   * if it forgot them, that is a reboot, and they are replayed.
   */
  firmataCheck(): void {
    if (this.current === 'disconnected' || this.protocolValue !== 'firmata' || this.handshake !== 'done') return;
    this.startPlainRestore(false);
  }

  /**
   * A plain Firmata board announced itself unasked (its firmware name at boot, as
   * StandardFirmata does): it rebooted and forgot its pins. Counted, reported, and the
   * recorded pins are replayed before it is `ready` again.
   */
  firmataBooted(): void {
    if (this.current === 'disconnected' || this.protocolValue !== 'firmata') return;
    if (this.handshake === 'restoring' && this.restoringAfterReboot) return; // this boot is being handled
    this.noteReboot({ bootId: null, previousBootId: null, causes: [], stateSurvived: false }, 'it announced itself');
    this.startPlainRestore(true);
  }

  /**
   * Someone else needs the port for a while (flashing): stop talking without declaring the
   * device lost. `linkUp()` starts again with a fresh handshake.
   */
  pause(cause: string): void {
    if (this.current === 'disconnected') return;
    this.linkIsUp = false;
    this.clearTimers();
    this.endSleep();
    this.restoreGeneration++;
    this.handshake = 'waiting-hello';
    this.detector.reset();
    this.transition('init', cause);
  }

  /**
   * A PING outside the schedule, only while `ready`: keep-traffic on a path that forgets idle
   * links (BridgeKeepalive). Its PONG is contact like any other; the schedule is unchanged.
   */
  keepPing(): void {
    if (this.current === 'ready' && this.handshake === 'done') this.ping();
  }

  /** Left on purpose: stop everything. The session cannot be reused. */
  close(): void {
    this.clearTimers();
    this.endSleep();
    this.options.leases?.off('change', this.onLeaseChange);
    this.restoreGeneration++;
    this.transition('disconnected', 'closed');
  }

  // ---- protocol -------------------------------------------------------------------------

  private onHello(hello: Hello): void {
    const previous = this.bootIdValue;
    const rebooted = previous !== null && hello.bootId !== previous;
    this.lastHello = hello;
    this.bootIdValue = hello.bootId;
    // BEATS carries the interval as a u14: a longer interval (a battery board PINGed every 20 s) is PINGed as before.
    this.beatsOn = this.options.beats !== false && hello.capabilities.beats && this.pingIntervalMs >= MIN_BEAT_INTERVAL_MS && this.pingIntervalMs <= MAX_U14;
    this.renewalAnswered = true;
    this.renewalsUnanswered = 0;
    this.beatRenewMs = this.renewPeriod(hello.hostTimeoutMs);
    this.emit('hello', hello);
    if (rebooted || !hello.reply) {
      // A boot HELLO, or a new boot id: the device restarted.
      this.noteReboot({ bootId: hello.bootId, previousBootId: previous, causes: hello.resetCauses, stateSurvived: hello.stateSurvived });
    }
    this.detector.reset();
    this.heartbeat(this.clock.now());
    this.handshake = 'restoring';
    const generation = ++this.restoreGeneration;
    if (this.options.deviceConfig) this.keepConfig(hello);
    const restore = this.options.restore?.(hello, rebooted || (!hello.reply && previous !== null)) ?? Promise.resolve();
    restore
      .catch((err: Error) => this.log.error({ err: err.message }, 'restoring device state failed'))
      .then(() => {
        if (generation !== this.restoreGeneration || this.current === 'disconnected') return;
        this.handshake = 'done';
        this.ping(); // ready on its PONG
      });
  }

  /**
   * Between BEATS renewals: the configured intervals, but at most a third of the host timeout
   * the device has or is about to be given (its host presence rides on them), and at least one
   * interval (then they go as often as PINGs would).
   */
  private renewPeriod(deviceHostTimeoutMs: number): number {
    let period = this.beatRenewIntervalsMs;
    for (const timeout of [deviceHostTimeoutMs, this.options.deviceConfig?.hostTimeoutMs ?? 0]) {
      if (timeout > 0) period = Math.min(period, Math.floor(timeout / 3));
    }
    return Math.max(this.pingIntervalMs, period);
  }

  /**
   * The configuration the device should have, as it would store it (watchdog rounded) and
   * limited to what its capabilities allow.
   */
  private wantedConfig(capabilities: Capabilities): DeviceConfig {
    const wanted = { ...this.options.deviceConfig! };
    const clamp = (key: string, message: string) => {
      if (this.clampWarnings?.has(key)) return;
      (this.clampWarnings ??= new Set()).add(key);
      this.log.warn({ capabilities }, message);
    };
    if (wanted.policy === 'sleep' && !capabilities.sleep) {
      wanted.policy = 'stay';
      clamp('sleep', 'the device cannot sleep (its HELLO has no sleep capability): policy sleep is set as stay');
    }
    if (wanted.watchdogMs !== 0 && !capabilities.watchdog) {
      wanted.watchdogMs = 0;
      clamp('watchdog', 'the device has no watchdog (its HELLO says so): watchdogMs is set as 0');
    }
    wanted.watchdogMs = effectiveWatchdogMs(wanted.watchdogMs) ?? wanted.watchdogMs;
    return wanted;
  }

  /** After a HELLO: CONFIG_SET if what it reports differs, else CONFIG_GET to compare the rest. */
  private keepConfig(hello: Hello): void {
    const wanted = this.wantedConfig(hello.capabilities);
    this.configToCheck = null;
    if (hello.watchdogMs !== wanted.watchdogMs || hello.policy !== wanted.policy || hello.hostTimeoutMs !== wanted.hostTimeoutMs) {
      this.log.info({ config: wanted }, 'configuring the device');
      this.options.send({ type: 'config-set', config: wanted });
      return;
    }
    this.configToCheck = wanted;
    this.options.send({ type: 'config-get' });
  }

  private onConfig(config: DeviceConfig): void {
    this.beatRenewMs = this.renewPeriod(config.hostTimeoutMs);
    const wanted = this.configToCheck;
    this.configToCheck = null;
    if (!wanted) return;
    const same = (Object.keys(wanted) as (keyof DeviceConfig)[]).every((key) => wanted[key] === config[key]);
    if (same) return;
    this.log.info({ config: wanted, device: config }, 'configuring the device');
    this.options.send({ type: 'config-set', config: wanted });
  }

  /** Counts and reports a reboot; a ready or sleeping device goes back to `init`. */
  private noteReboot(info: RebootInfo, how?: string): void {
    const causes = info.causes;
    if (causes.length === 0) this.counters.reboots.unknown++;
    for (const cause of causes) this.counters.reboots[cause]++;
    const what = causes.join(', ') || (how ?? 'unknown cause');
    this.log.info({ ...info }, `device rebooted (${what})`);
    this.emit('reboot', info);
    if (this.current === 'ready' || this.current === 'sleeping') this.transition('init', `rebooted (${causes.join(', ') || how || 'unknown'})`);
    this.endSleep();
  }

  private becomePlain(): void {
    this.protocolValue = 'firmata';
    this.probeOutstanding = false;
    const message =
      'device has no tether keepalive extension (plain Firmata): liveness from Firmata answers, reboots from its announcements, no sleep, watchdog or state registers';
    if (this.plainLogged) this.log.info({}, message);
    else this.log.warn({}, message);
    this.plainLogged = true;
    this.startPlainRestore(false);
  }

  /** Plain Firmata: check or replay the recorded pins, then `ready`. */
  private startPlainRestore(rebooted: boolean): void {
    this.handshake = 'restoring';
    this.restoringAfterReboot = rebooted;
    const generation = ++this.restoreGeneration;
    const from = this.current;
    const restore = this.options.restorePlain?.(rebooted) ?? Promise.resolve({ forgot: false });
    restore.then(
      ({ forgot }) => {
        if (generation !== this.restoreGeneration || this.current === 'disconnected' || !this.linkIsUp) return;
        if (forgot && !rebooted) {
          // Its announcement was missed (e.g. it rebooted while the port was closed), but it forgot.
          this.noteReboot({ bootId: null, previousBootId: null, causes: [], stateSurvived: false }, 'it had forgotten its pins');
        }
        this.handshake = 'done';
        const cause = rebooted || forgot ? 'pins restored after a reboot' : from === 'lost' ? 'answered again' : 'handshake complete (plain Firmata)';
        if (this.current === 'init' || this.current === 'lost') this.transition('ready', cause);
      },
      (err: Error) => {
        if (generation !== this.restoreGeneration || this.current === 'disconnected') return;
        this.log.warn({ err: err.message }, 'restoring the plain Firmata board failed: trying again on its next answer');
        this.handshake = 'waiting-hello';
      },
    );
  }

  private onPong(seq: number, bootId: number, now: number): void {
    const rttMs = this.sequencer.answer(seq, now);
    if (rttMs < PONG_REORDERED) {
      this.counters.strayPongs++;
      this.log.debug({ seq, why: strayReason(rttMs) }, 'PONG matches no PING');
    } else {
      this.counters.pongs++;
      this.renewalAnswered = true;
      this.renewalsUnanswered = 0;
      if (rttMs >= 0) {
        this.rtt.add(rttMs);
        this.options.onRtt?.(rttMs);
        if (this.listenerCount('rtt') > 0) this.emit('rtt', rttMs);
      }
    }
    this.alive(bootId, now);
  }

  /** A BEAT: the device's own heartbeat, as a PONG is for liveness (no RTT, nothing to match). */
  private onBeat(bootId: number, now: number): void {
    this.counters.beats++;
    this.alive(bootId, now);
  }

  /** A PONG or BEAT: contact; a boot HELLO missed; `ready` once the handshake is done. */
  private alive(bootId: number, now: number): void {
    this.heartbeat(now);
    if (this.bootIdValue !== null && bootId !== this.bootIdValue && this.handshake === 'done') {
      // Its boot HELLO was lost (e.g. while the link was down): ask again.
      this.handshake = 'waiting-hello';
      this.options.send({ type: 'hello-request' });
      return;
    }
    if (this.handshake !== 'done') return;
    if (this.current === 'init' || this.current === 'lost') {
      this.transition('ready', this.current === 'lost' ? 'answered again' : 'handshake complete');
    } else if (this.current === 'sleeping') {
      this.endSleep();
      this.transition('ready', 'answered while announced asleep');
    }
  }

  private onSleeping(durationMs: number, now: number): void {
    this.clearDeadline();
    this.sleepStartedAt = now;
    this.sleepDeadline = durationMs > 0 ? now + durationMs + this.sleepGraceMs : Infinity;
    this.transition('sleeping', durationMs > 0 ? `device sleeps up to ${durationMs} ms` : 'device sleeps until woken');
    this.emit('sleeping', durationMs);
    this.hurry(); // the wake byte is repeated each tick: every interval, not at the next BEATS renewal
    if (this.sleepDeadline !== Infinity) this.armDeadline(this.sleepDeadline);
    // Someone needs it awake: wake it straight away.
    if (this.options.leases?.held) this.wake();
  }

  private onAwake(now: number): void {
    this.endSleep();
    this.detector.reset();
    this.heartbeat(now);
    this.emit('awake');
    this.ping(); // carries the lease; ready on its PONG
  }

  private heartbeat(now: number): void {
    if (this.current === 'sleeping') return; // the sleep deadline rules while asleep
    this.detector.heartbeat(now);
    const deadline = this.detector.deadline();
    // A deadline armed no later than the new one stays: when it fires, checkDeadline() finds
    // the board alive and arms the current deadline. One timer per bound, not one per PONG.
    if (this.deadlineTimer !== undefined && this.deadlineAt <= deadline) return;
    this.armDeadline(deadline);
  }

  // ---- timers ---------------------------------------------------------------------------

  private tick = (): void => {
    this.spentPingTimer = this.pingTimer;
    this.pingTimer = undefined;
    if (!this.linkIsUp || this.current === 'disconnected') return;
    if (this.current === 'sleeping') {
      // A wake byte that raced the board into sleep was taken as data, not as a wake-up: repeat it.
      if (this.wakeWanted) this.options.sendRaw([WAKE_BYTE]);
    } else {
      if (this.protocolValue === 'firmata') {
        this.options.sendRaw([FIRMATA_REPORT_VERSION]);
      } else if (this.handshake === 'waiting-hello') {
        this.requestHello();
      } else if (this.handshake === 'done') {
        if (this.beatsOn) {
          const delay = this.beatsTick();
          if (delay >= 0) this.pingTimer = this.armTick(delay);
          return;
        }
        this.ping();
      }
    }
    this.pingTimer = this.armTick();
  };

  /**
   * The tick of a device that sends BEATs: a renewal when one is due, or every interval while a
   * lease is held or writes wait for their PONG (as PINGs would go); a renewal left unanswered is
   * sent again an interval later, and `misses` of them in a row make the device `lost`. Returns
   * the delay to the next tick (-1: none, it is lost).
   */
  private beatsTick(): number {
    const now = this.clock.now();
    const everyInterval = this.options.leases?.held === true || this.options.pingsWanted?.() === true;
    if (!this.renewalAnswered) {
      if (++this.renewalsUnanswered >= this.misses) {
        this.becomeLost(`its PONGs stopped while it sends BEATs: ${this.renewalsUnanswered} PINGs in a row unanswered (its input is not reaching it)`);
        return -1;
      }
      this.ping();
      return this.pingIntervalMs;
    }
    if (everyInterval || now >= this.nextRenewalAt) {
      this.ping();
      // The answer is looked for an interval later, then the tick waits for the next renewal.
      return this.pingIntervalMs;
    }
    return this.nextRenewalAt - now;
  }

  private armTick(delay = this.pingIntervalMs): TimerHandle {
    const spent = this.spentPingTimer;
    this.spentPingTimer = undefined;
    this.tickAt = this.clock.now() + delay;
    return rearm(this.clock, spent, this.tick, delay);
  }

  /**
   * Something needs a PING within an interval (a lease taken, writes waiting for their PONG):
   * a tick waiting for the next BEATS renewal comes sooner.
   */
  hurry(): void {
    if (!this.beatsOn || this.pingTimer === undefined || this.tickAt <= this.clock.now() + this.pingIntervalMs) return;
    this.clock.clearTimeout(this.pingTimer);
    this.spentPingTimer = this.pingTimer;
    this.pingTimer = this.armTick();
  }

  /**
   * HELLO_REQUEST; while the protocol is unknown, followed by a Firmata version query: any
   * board answers that (contact), and a plain Firmata board answers it without a HELLO first.
   */
  private requestHello(): void {
    this.options.send({ type: 'hello-request' });
    if (this.protocolValue !== 'unknown') return;
    this.options.sendRaw([FIRMATA_REPORT_VERSION]);
    this.probeOutstanding = true;
  }

  private ping(): void {
    if (!this.linkIsUp || this.current === 'disconnected') return;
    const seq = this.sequencer.next(this.clock.now());
    const leaseMs = this.options.leases?.held ? this.leaseMs : 0;
    this.counters.pingsSent++;
    if (this.beatsOn) {
      this.renewalAnswered = false;
      this.nextRenewalAt = this.clock.now() + this.beatRenewMs;
      // Beats for three renewals: one or two renewals lost on the way do not stop them.
      this.options.send({ type: 'beats', seq, leaseMs, intervalMs: this.pingIntervalMs, forMs: 3 * this.beatRenewMs });
    } else if (this.options.sendPing) this.options.sendPing(seq, leaseMs);
    else this.options.send({ type: 'ping', seq, leaseMs });
  }

  private armDeadline(at: number): void {
    this.clearDeadline();
    this.deadlineDeferred = false;
    if (!Number.isFinite(at)) return;
    const delay = Math.max(0, at - this.clock.now());
    this.deadlineAt = at;
    this.deadlineTimer = this.armCheck(delay);
  }

  private armCheck(delay: number): TimerHandle {
    const spent = this.spentDeadlineTimer;
    this.spentDeadlineTimer = undefined;
    return rearm(this.clock, spent, this.checkDeadline, delay);
  }

  private checkDeadline = (): void => {
    this.spentDeadlineTimer = this.deadlineTimer;
    this.deadlineTimer = undefined;
    const now = this.clock.now();
    // Fired late: the event loop was blocked (a fleet starting, a loaded machine), and timers run
    // before the loop reads its sockets, where the board's answers may be waiting. Look again
    // after one turn of the loop, once, before concluding anything.
    if (now - this.deadlineAt > LATE_DEADLINE_MS && !this.deadlineDeferred) {
      this.deadlineDeferred = true;
      this.deadlineTimer = this.armCheck(0);
      return;
    }
    this.deadlineDeferred = false;
    if (this.current === 'sleeping') {
      if (now >= this.sleepDeadline) {
        this.endSleep();
        this.becomeLost('overslept: no AWAKE by its announced wake time plus grace');
      } else {
        this.armDeadline(this.sleepDeadline);
      }
      return;
    }
    // Also after a reconnect: a board heard before but silent on the new link (a middlebox that
    // accepts and forwards nothing) must not stay `init` forever: contact counts since this link came up.
    if (this.current === 'init' && !this.contactSinceLinkUp) {
      this.becomeLost('no answer since the link came up');
      this.emit('unanswered', 'no answer since the link came up');
      return;
    }
    if (this.current === 'lost' && !this.contactSinceLinkUp && this.linkIsUp) {
      this.emit('unanswered', 'still no answer since the link came up');
      return;
    }
    if (this.detector.isLost(now)) {
      const what = this.protocolValue === 'firmata' ? 'Firmata answer' : 'PONG';
      this.becomeLost(`no ${what} for ${Math.round(now - (this.lastSeenAt === -Infinity ? now : this.lastSeenAt))} ms (${this.detector.kind} detector)`);
    } else {
      this.armDeadline(this.detector.deadline());
    }
  };

  private clearDeadline(): void {
    if (this.deadlineTimer !== undefined) {
      this.clock.clearTimeout(this.deadlineTimer);
      this.spentDeadlineTimer = this.deadlineTimer;
    }
    this.deadlineTimer = undefined;
  }

  private clearTimers(): void {
    this.clearDeadline();
    if (this.pingTimer !== undefined) {
      this.clock.clearTimeout(this.pingTimer);
      this.spentPingTimer = this.pingTimer;
    }
    this.pingTimer = undefined;
  }

  // ---- helpers --------------------------------------------------------------------------

  private becomeLost(cause: string): void {
    if (this.current === 'lost' || this.current === 'disconnected') return;
    this.counters.lostCount++;
    // A device that comes back must go through the handshake again (it may have rebooted).
    if (this.protocolValue !== 'unknown') this.handshake = 'waiting-hello';
    this.transition('lost', cause);
    // A board that sent BEATs was not written to: ask for it at once (on a cut TCP path, data left
    // unacknowledged is what lets the kernel give the socket up), then every interval.
    if (this.beatsOn && this.linkIsUp && this.handshake === 'waiting-hello') this.requestHello();
    if (this.linkIsUp && this.pingTimer === undefined) this.pingTimer = this.armTick();
    else this.hurry(); // a tick waiting for a BEATS renewal: HELLO_REQUESTs every interval from now
  }

  private endSleep(): void {
    this.wakeWanted = false;
    if (this.current !== 'sleeping' || this.sleepStartedAt === null) return;
    this.counters.asleepMs += this.clock.now() - this.sleepStartedAt;
    this.sleepStartedAt = null;
    this.sleepDeadline = Infinity;
  }

  /** Sends the wake byte to a sleeping device (it answers with AWAKE), again each tick until it does. */
  wake(): void {
    if (this.current !== 'sleeping' || !this.linkIsUp) return;
    this.wakeWanted = true;
    this.options.sendRaw([WAKE_BYTE]);
  }

  private leaseChanged(held: boolean): void {
    if (!held) return;
    if (this.current === 'sleeping') this.wake();
    else if (this.current === 'ready') {
      this.ping(); // carry the lease now, not at the next tick
      this.hurry(); // and every interval from now (a device sending BEATs is otherwise renewed seldom)
    }
  }

  private transition(to: SessionState, cause: string): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    const change: StateChange = { from, to, cause, at: this.clock.now() };
    const level = to === 'lost' ? 'warn' : 'info';
    this.log[level]({ from, to, cause }, `device ${to} (${cause})`);
    this.emit('state', change);
  }
}
