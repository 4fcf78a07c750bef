import { rearm, type Clock, type TimerHandle } from '../time/clock.ts';

export interface KeepaliveProbeOptions {
  /** The keepalive in force (the one sent in CONNECT, or the broker's Server Keep Alive). */
  keepaliveMs: number;
  /** How long a PINGREQ may go unanswered before the link is declared half-open. */
  pingRespTimeoutMs: number;
  /**
   * Longest silence (in either direction) before a PINGREQ goes out, to keep the middleboxes
   * on the path awake; default and at most keepaliveMs. Independent of the keepalive sent in
   * CONNECT, which stays the detection bound (MQTT lets a client send PINGREQ at any time).
   */
  pingIntervalMs?: number;
  /** A PINGREQ sent after `idleMs` of silence both ways was answered: the path survived that idle time. */
  onPingAnswered?: (info: { idleMs: number; rttMs: number }) => void;
  clock: Clock;
  /** Writes a PINGREQ (the probe does no I/O itself). */
  sendPing: () => void;
  /** Called once when the link is declared dead; the probe has stopped by then. */
  onHalfOpen: (info: HalfOpenInfo) => void;
}

export interface HalfOpenInfo {
  /** Time since the last packet of any kind was received. */
  silentForMs: number;
  /** How long the unanswered PINGREQ has been outstanding. */
  pingOutstandingForMs: number;
  /** The silence (both ways) after which that PINGREQ was sent: the path was dead by then. */
  pingIdleMs: number;
}

/** An answer deadline this late means the event loop was blocked: its sockets are read before it is believed. */
const LATE_DEADLINE_MS = 100;

/**
 * MQTT keepalive as the client's own failure detector, pure apart from the injected clock
 * and callbacks so it can be driven with a fake clock.
 *
 * Rules, while started:
 * - A PINGREQ is due pingIntervalMs (at most keepaliveMs) after the last packet received or the last packet sent,
 *   whichever is older. "Received" keeps us honest about the link; "sent" keeps the
 *   broker's own keepalive (1.5 x keepalive of silence from us) satisfied even when we only
 *   receive. Any packet received (or sent) before that moment defers the PINGREQ.
 * - Once a PINGREQ is out, a PINGRESP must arrive within pingRespTimeoutMs, else the link is
 *   half-open (other packets arriving meanwhile do not excuse a missing PINGRESP: then our
 *   direction is the dead one, and the broker will not hear us either).
 *
 * Bound: the PINGREQ goes out no later than lastReceived + keepaliveMs (pingIntervalMs is
 * never longer), so half-open is declared no later than lastReceived + keepaliveMs +
 * pingRespTimeoutMs, whatever the interval.
 *
 * One timer at a time, moved lazily: packets only move deadlines later, so a timer that
 * fires early simply re-arms for the new deadline (no timer churn per packet).
 */
export class KeepaliveProbe {
  readonly keepaliveMs: number;
  readonly pingRespTimeoutMs: number;
  private readonly clock: Clock;
  private readonly sendPing: () => void;
  private readonly onHalfOpen: (info: HalfOpenInfo) => void;
  private readonly onPingAnswered: ((info: { idleMs: number; rttMs: number }) => void) | undefined;
  private intervalMs: number;
  private pingIdleMs = 0;
  private answered = 0;
  private timer: TimerHandle | null = null;
  /** The last timer, run or cleared: rearm() sets it again in the same handle on a SharedTimers clock. */
  private spent: TimerHandle | undefined;
  private running = false;
  private lastReceivedAt = 0;
  private lastSentAt = 0;
  private pingSentAt: number | null = null;
  private rttMs: number | null = null;
  private pings = 0;
  /** The answer deadline fired late and is looked at again after one turn of the event loop. */
  private deferred = false;

  constructor(options: KeepaliveProbeOptions) {
    const { keepaliveMs, pingRespTimeoutMs } = options;
    if (!Number.isFinite(keepaliveMs) || keepaliveMs <= 0) {
      throw new RangeError(`keepaliveMs must be a finite number > 0, got ${keepaliveMs}`);
    }
    if (!Number.isFinite(pingRespTimeoutMs) || pingRespTimeoutMs <= 0) {
      throw new RangeError(`pingRespTimeoutMs must be a finite number > 0, got ${pingRespTimeoutMs}`);
    }
    this.keepaliveMs = keepaliveMs;
    this.pingRespTimeoutMs = pingRespTimeoutMs;
    this.clock = options.clock;
    this.sendPing = options.sendPing;
    this.onHalfOpen = options.onHalfOpen;
    this.onPingAnswered = options.onPingAnswered;
    this.intervalMs = this.clampInterval(options.pingIntervalMs ?? keepaliveMs);
  }

  /** The silence after which a PINGREQ goes out now (at most keepaliveMs). */
  get pingIntervalMs(): number {
    return this.intervalMs;
  }

  /** Changes the PINGREQ interval at once: a PINGREQ that is now overdue goes out immediately. */
  setPingInterval(ms: number): void {
    this.intervalMs = this.clampInterval(ms);
    if (this.running && this.pingSentAt === null) this.arm(Math.min(this.lastReceivedAt, this.lastSentAt) + this.intervalMs);
  }

  /** Time since the older of the last packet received and the last packet sent (silence both ways). */
  get idleMs(): number {
    return this.clock.now() - Math.min(this.lastReceivedAt, this.lastSentAt);
  }

  private clampInterval(ms: number): number {
    if (!Number.isFinite(ms) || ms <= 0) throw new RangeError(`pingIntervalMs must be a finite number > 0, got ${ms}`);
    return Math.min(ms, this.keepaliveMs);
  }

  /** Call when the connection is up (CONNACK received): it counts as a packet received and sent now. */
  start(): void {
    this.stop();
    const now = this.clock.now();
    this.running = true;
    this.lastReceivedAt = now;
    this.lastSentAt = now;
    this.pingSentAt = null;
    this.arm(now + this.intervalMs);
  }

  /** Stops all timing; nothing fires afterwards. */
  stop(): void {
    this.running = false;
    this.pingSentAt = null;
    this.deferred = false;
    if (this.timer !== null) {
      this.clock.clearTimeout(this.timer);
      this.spent = this.timer;
      this.timer = null;
    }
  }

  /** Every packet received from the broker; `cmd` as mqtt-packet names it ('pingresp', 'publish', ...). */
  packetReceived(cmd: string): void {
    if (!this.running) return;
    const now = this.clock.now();
    this.lastReceivedAt = now;
    if (cmd === 'pingresp' && this.pingSentAt !== null) {
      this.deferred = false;
      const rttMs = now - this.pingSentAt;
      this.rttMs = rttMs;
      this.pingSentAt = null;
      this.answered++;
      // The timer waits for the answer deadline; with an interval shorter than that, the next PINGREQ is due sooner.
      this.arm(Math.min(this.lastReceivedAt, this.lastSentAt) + this.intervalMs);
      this.onPingAnswered?.({ idleMs: this.pingIdleMs, rttMs });
    }
  }

  /** Every packet written to the broker. */
  packetSent(): void {
    if (!this.running) return;
    this.lastSentAt = this.clock.now();
  }

  get isRunning(): boolean {
    return this.running;
  }

  get pingOutstanding(): boolean {
    return this.pingSentAt !== null;
  }

  /** Round trip of the last answered PINGREQ. */
  get lastPingRttMs(): number | null {
    return this.rttMs;
  }

  /** PINGREQs sent since construction. */
  get pingsSent(): number {
    return this.pings;
  }

  /** PINGRESPs matched to a PINGREQ since construction. */
  get pingsAnswered(): number {
    return this.answered;
  }

  /** The latest moment (clock time) at which a dead link will have been declared, given what was seen so far. */
  get deadlineAt(): number {
    return this.pingSentAt !== null
      ? this.pingSentAt + this.pingRespTimeoutMs
      : Math.min(this.lastReceivedAt, this.lastSentAt) + this.intervalMs + this.pingRespTimeoutMs;
  }

  /** One timer per probe, set again in place (a board's session re-arms it two or three times per PINGREQ). */
  private arm(at: number): void {
    const handle = this.timer ?? this.spent;
    this.spent = undefined;
    this.timer = rearm(this.clock, handle, this.onTimer, Math.max(0, at - this.clock.now()));
  }

  private readonly onTimer = (): void => {
    this.spent = this.timer ?? undefined;
    this.timer = null;
    this.check();
  };

  private check(): void {
    if (!this.running) return;
    const now = this.clock.now();
    if (this.pingSentAt !== null) {
      const answerBy = this.pingSentAt + this.pingRespTimeoutMs;
      if (now < answerBy) {
        this.arm(answerBy);
        return;
      }
      // Fired late: the loop was blocked (thousands of boards starting, a loaded machine) and
      // timers run before it reads its sockets, where the PINGRESP may be waiting. Look again
      // after one turn, once, before declaring the link half-open.
      if (now - answerBy > LATE_DEADLINE_MS && !this.deferred) {
        this.deferred = true;
        this.arm(now);
        return;
      }
      this.deferred = false;
      const info: HalfOpenInfo = { silentForMs: now - this.lastReceivedAt, pingOutstandingForMs: now - this.pingSentAt, pingIdleMs: this.pingIdleMs };
      this.stop();
      this.onHalfOpen(info);
      return;
    }
    const quietSince = Math.min(this.lastReceivedAt, this.lastSentAt);
    const pingAt = quietSince + this.intervalMs;
    if (now < pingAt) {
      this.arm(pingAt);
      return;
    }
    this.pingIdleMs = now - quietSince;
    this.pingSentAt = now;
    this.lastSentAt = now;
    this.pings++;
    this.arm(now + this.pingRespTimeoutMs);
    // Last: sendPing may synchronously report the write (packetSent) or even fail and stop us.
    this.sendPing();
  }
}
