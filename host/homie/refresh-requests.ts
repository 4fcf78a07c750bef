import type { Clock, TimerHandle } from '../time/clock.ts';
import { HOMIE_PREFIX } from './homie-topics.ts';

/**
 * Asking the gateway for current state without retained messages (a clustered broker such as
 * RabbitMQ 3.x keeps retained messages per node and does not hand them to a later wildcard
 * subscriber): publishing any payload, not retained, to
 * - `homie/5/<device>/$tether/refresh` makes the gateway publish that board's current state, or
 *   with the gateway's id, the gateway's and every one of its boards';
 * - `homie/5/$broadcast/tether-refresh` makes every tether gateway on the broker do so.
 * The answer goes out on the usual topics, not retained (docs/topics.md, "Current state without
 * retained messages").
 */
export const refreshTopics = {
  device: (device: string) => `${HOMIE_PREFIX}/${device}/$tether/refresh`,
  broadcast: `${HOMIE_PREFIX}/$broadcast/tether-refresh`,
};

/**
 * At most one refresh per key (a device) every `minIntervalMs`: a request inside the window is
 * not dropped but answered once at its end (a second consumer may have subscribed after the
 * first answer went out), so a flood of requests costs one answer per window.
 */
export class RefreshThrottle {
  private readonly last = new Map<string, number>();
  private readonly pending = new Map<string, TimerHandle>();

  constructor(
    private readonly clock: Clock,
    private readonly minIntervalMs = 1000,
  ) {}

  request(key: string, run: () => void): void {
    if (this.pending.has(key)) return;
    const now = this.clock.now();
    const last = this.last.get(key);
    const wait = last === undefined ? 0 : last + this.minIntervalMs - now;
    if (wait <= 0) {
      this.last.set(key, now);
      run();
      return;
    }
    this.pending.set(
      key,
      this.clock.setTimeout(() => {
        this.pending.delete(key);
        this.last.set(key, this.clock.now());
        run();
      }, wait),
    );
  }

  stop(): void {
    for (const timer of this.pending.values()) this.clock.clearTimeout(timer);
    this.pending.clear();
  }
}
