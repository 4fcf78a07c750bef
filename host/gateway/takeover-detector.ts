import type { EventEmitter } from 'node:events';
import type { BrokerSessionEvents } from '../mqtt/broker-session.ts';
import type { Clock } from '../time/clock.ts';

/** MQTT 5 reason code of the DISCONNECT a broker sends a connection whose client id another one took. */
export const SESSION_TAKEN_OVER = 0x8e;

export interface TakeoverKick {
  /** `disconnect-0x8e`: the broker said so (MQTT 5). `quick-close`: closed soon after connecting (3.1.1, and MQTT 5 brokers that just close). */
  kind: 'disconnect-0x8e' | 'quick-close';
  /** Kicks within the window, this one included. */
  count: number;
}

export interface TakeoverDetectorOptions {
  clock: Clock;
  onKick: (kick: TakeoverKick) => void;
  /** A connection lost within this long of coming up counts as a kick (default 2000 ms). */
  quickMs?: number;
  /** Kicks are counted over this window (default 30 000 ms). */
  windowMs?: number;
}

/**
 * Tells when another client is taking a session's client id over. MQTT 5 lets a broker say so
 * (DISCONNECT 0x8E), but not every broker does: Mosquitto 2.0.11 just closes the connection,
 * as every MQTT 3.1.1 broker must. A takeover then looks like a connection closed soon after
 * it came up, again and again, while reconnecting succeeds at once; an outage looks different
 * (connects fail) and a middlebox cutting idle connections cuts them after their idle time.
 */
export class TakeoverDetector {
  private upAt: number | null = null;
  private kicks: number[] = [];
  private readonly quickMs: number;
  private readonly windowMs: number;
  private readonly onUp = () => (this.upAt = this.options.clock.now());
  private readonly onDown = () => {
    const { upAt } = this;
    this.upAt = null;
    if (upAt !== null && this.options.clock.now() - upAt <= this.quickMs) this.kick('quick-close');
  };
  private readonly onDisconnect = (code: number) => {
    if (code !== SESSION_TAKEN_OVER) return;
    this.upAt = null; // the close that follows is this same kick
    this.kick('disconnect-0x8e');
  };

  constructor(
    private readonly session: Pick<EventEmitter<BrokerSessionEvents>, 'on' | 'off'>,
    private readonly options: TakeoverDetectorOptions,
  ) {
    this.quickMs = options.quickMs ?? 2000;
    this.windowMs = options.windowMs ?? 30_000;
    session.on('up', this.onUp);
    session.on('down', this.onDown);
    session.on('broker-disconnect', this.onDisconnect);
  }

  stop(): void {
    this.session.off('up', this.onUp);
    this.session.off('down', this.onDown);
    this.session.off('broker-disconnect', this.onDisconnect);
  }

  private kick(kind: TakeoverKick['kind']): void {
    const now = this.options.clock.now();
    this.kicks = this.kicks.filter((t) => now - t < this.windowMs);
    this.kicks.push(now);
    this.options.onKick({ kind, count: this.kicks.length });
  }
}
