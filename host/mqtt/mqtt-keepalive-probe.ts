import type { Clock, TimerHandle } from '../time/clock.ts';

export interface KeepaliveProbeOptions {
  /** The keepalive in force (the one sent in CONNECT, or the broker's Server Keep Alive). */
  keepaliveMs: number;
  /** How long a PINGREQ may go unanswered before the link is declared half-open. */
  pingRespTimeoutMs: number;
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
}

/**
 * MQTT keepalive as the client's own failure detector, pure apart from the injected clock
 * and callbacks so it can be driven with a fake clock.
 *
 * Rules, while started:
 * - A PINGREQ is due keepaliveMs after the last packet received or the last packet sent,
 *   whichever is older. "Received" keeps us honest about the link; "sent" keeps the
 *   broker's own keepalive (1.5 x keepalive of silence from us) satisfied even when we only
 *   receive. Any packet received (or sent) before that moment defers the PINGREQ.
 * - Once a PINGREQ is out, a PINGRESP must arrive within pingRespTimeoutMs, else the link is
 *   half-open (other packets arriving meanwhile do not excuse a missing PINGRESP: then our
 *   direction is the dead one, and the broker will not hear us either).
 *
 * Bound: the PINGREQ goes out no later than lastReceived + keepaliveMs, so half-open is
 * declared no later than lastReceived + keepaliveMs + pingRespTimeoutMs.
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
  private timer: TimerHandle | null = null;
  private running = false;
  private lastReceivedAt = 0;
  private lastSentAt = 0;
  private pingSentAt: number | null = null;
  private rttMs: number | null = null;
  private pings = 0;

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
  }

  /** Call when the connection is up (CONNACK received): it counts as a packet received and sent now. */
  start(): void {
    this.stop();
    const now = this.clock.now();
    this.running = true;
    this.lastReceivedAt = now;
    this.lastSentAt = now;
    this.pingSentAt = null;
    this.arm(now + this.keepaliveMs);
  }

  /** Stops all timing; nothing fires afterwards. */
  stop(): void {
    this.running = false;
    this.pingSentAt = null;
    if (this.timer !== null) {
      this.clock.clearTimeout(this.timer);
      this.timer = null;
    }
  }

  /** Every packet received from the broker; `cmd` as mqtt-packet names it ('pingresp', 'publish', ...). */
  packetReceived(cmd: string): void {
    if (!this.running) return;
    const now = this.clock.now();
    this.lastReceivedAt = now;
    if (cmd === 'pingresp' && this.pingSentAt !== null) {
      this.rttMs = now - this.pingSentAt;
      this.pingSentAt = null;
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

  /** The latest moment (clock time) at which a dead link will have been declared, given what was seen so far. */
  get deadlineAt(): number {
    return this.pingSentAt !== null
      ? this.pingSentAt + this.pingRespTimeoutMs
      : Math.min(this.lastReceivedAt, this.lastSentAt) + this.keepaliveMs + this.pingRespTimeoutMs;
  }

  private arm(at: number): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    const delay = Math.max(0, at - this.clock.now());
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.check();
    }, delay);
  }

  private check(): void {
    if (!this.running) return;
    const now = this.clock.now();
    if (this.pingSentAt !== null) {
      const answerBy = this.pingSentAt + this.pingRespTimeoutMs;
      if (now < answerBy) {
        this.arm(answerBy);
        return;
      }
      const info: HalfOpenInfo = { silentForMs: now - this.lastReceivedAt, pingOutstandingForMs: now - this.pingSentAt };
      this.stop();
      this.onHalfOpen(info);
      return;
    }
    const pingAt = Math.min(this.lastReceivedAt, this.lastSentAt) + this.keepaliveMs;
    if (now < pingAt) {
      this.arm(pingAt);
      return;
    }
    this.pingSentAt = now;
    this.lastSentAt = now;
    this.pings++;
    this.arm(now + this.pingRespTimeoutMs);
    // Last: sendPing may synchronously report the write (packetSent) or even fail and stop us.
    this.sendPing();
  }
}
