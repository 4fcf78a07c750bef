import type { Clock } from '../time/clock.ts';

/**
 * At most `burst` log lines per key in each `windowMs`; what is held back is counted and
 * reported with the next line allowed, so a flood of bad input costs one line per window.
 */
export class LogRateLimiter {
  private readonly windows = new Map<string, { start: number; count: number; suppressed: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly options: { windowMs: number; burst: number } = { windowMs: 60_000, burst: 10 },
  ) {}

  /** Whether a line for `key` may be logged now, and how many were held back since the last one. */
  allow(key: string): { ok: boolean; suppressed: number } {
    const now = this.clock.now();
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.options.windowMs) {
      const suppressed = w?.suppressed ?? 0;
      w = { start: now, count: 0, suppressed: 0 };
      this.windows.set(key, w);
      w.count++;
      return { ok: true, suppressed };
    }
    if (w.count < this.options.burst) {
      w.count++;
      const suppressed = w.suppressed;
      w.suppressed = 0;
      return { ok: true, suppressed };
    }
    w.suppressed++;
    return { ok: false, suppressed: w.suppressed };
  }
}
