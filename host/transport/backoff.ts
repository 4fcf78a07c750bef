export interface BackoffOptions {
  /** Ceiling of the first delay. */
  initialMs?: number;
  /** No delay is ever longer than this. */
  maxMs?: number;
  /** The ceiling grows by this factor per attempt. */
  factor?: number;
  /**
   * 'full': each delay is uniform between the floor and the current ceiling, so many hosts
   * that lost the same bridge do not all retry in step. 'none': the ceiling itself.
   */
  jitter?: 'full' | 'none';
  /** Source of uniform numbers in [0, 1); injectable for tests. */
  random?: () => number;
}

/** A delay is never shorter than this share of initialMs: full jitter may draw 0, and a 0 ms retry loop would spin. */
export const BACKOFF_FLOOR_SHARE = 0.1;

/**
 * Delays for retrying something that keeps failing: exponential growth up to a cap, with
 * "full jitter". Pure: no timers; the caller waits.
 */
export class ExponentialBackoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  readonly jitter: 'full' | 'none';
  readonly floorMs: number;
  private readonly random: () => number;
  private attempts = 0;

  constructor(options: BackoffOptions = {}) {
    const { initialMs = 250, maxMs = 30_000, factor = 2, jitter = 'full', random = Math.random } = options;
    if (!Number.isFinite(initialMs) || initialMs <= 0) {
      throw new RangeError(`backoff initialMs must be a finite number > 0, got ${initialMs}`);
    }
    if (!Number.isFinite(maxMs) || maxMs < initialMs) {
      throw new RangeError(`backoff maxMs must be a finite number >= initialMs (${initialMs}), got ${maxMs}`);
    }
    if (!Number.isFinite(factor) || factor < 1) {
      throw new RangeError(`backoff factor must be a finite number >= 1, got ${factor}`);
    }
    if (jitter !== 'full' && jitter !== 'none') {
      throw new RangeError(`backoff jitter must be 'full' or 'none', got ${String(jitter)}`);
    }
    if (typeof random !== 'function') {
      throw new RangeError('backoff random must be a function returning a number in [0, 1)');
    }
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.factor = factor;
    this.jitter = jitter;
    this.random = random;
    this.floorMs = initialMs * BACKOFF_FLOOR_SHARE;
  }

  /** How many delays next() has handed out since construction or the last reset(). */
  get attempt(): number {
    return this.attempts;
  }

  /** The delay before the next attempt, in whole milliseconds (at least 1); advances the attempt count. */
  next(): number {
    // factor ** attempts overflows to Infinity after many attempts; min() then caps it.
    const ceiling = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempts);
    this.attempts++;
    // ceil, not round: even a fractional floor (initialMs < 10) must give at least 1 ms.
    if (this.jitter === 'none') return Math.ceil(ceiling);
    let r = this.random();
    // A broken random source must not produce negative or endless delays; NaN takes the safe (long) end.
    r = Number.isNaN(r) ? 1 : Math.min(1, Math.max(0, r));
    return Math.ceil(this.floorMs + r * (ceiling - this.floorMs));
  }

  /** Back to the first delay (call after a success). */
  reset(): void {
    this.attempts = 0;
  }
}
