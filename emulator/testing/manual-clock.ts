import type { Clock, TimerHandle, WallClock } from '../../host/time/clock.ts';

interface ManualTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/** Lets pending promise callbacks (and I/O callbacks already due) run: one real setImmediate. */
const letPromisesRun = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A Clock that moves only when told: the one fake time of the test suite, also used by the
 * Espruino stand-in and simulations. Nothing global is faked: only code handed this clock
 * sees its time.
 *
 * - Timers run in the order they fall due; timers due at the same time in the order they were set.
 * - A timer runs with now() equal to its due time.
 * - A timer set while time is advanced (by a timer callback) runs in that same advance if it
 *   falls due before its end.
 * - `advance()` runs callbacks synchronously, one after the other. Code that awaits between
 *   timers (an async retry loop, a promise resolved by a timer) needs `advanceAsync()`.
 */
export class ManualClock implements Clock, WallClock {
  private time: number;
  private seq = 0;
  private readonly timers = new Map<number, ManualTimer>();

  /** `start`: the monotonic time to begin at; `epochMs`: the wall-clock time that `start` corresponds to. */
  constructor(
    private readonly start = 0,
    private readonly epochMs = Date.UTC(2026, 0, 1),
  ) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  wallNow(): number {
    return this.epochMs + (this.time - this.start);
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const seq = ++this.seq;
    this.timers.set(seq, { at: this.time + Math.max(0, ms), seq, fn });
    return seq as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as unknown as number);
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /** The event loop is busy for `ms`: time passes, nothing fires (due timers fire late, on the next advance). */
  block(ms: number): void {
    this.time += ms;
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (let timer = this.takeDue(end); timer !== undefined; timer = this.takeDue(end)) timer.fn();
    this.time = Math.max(this.time, end);
  }

  /**
   * Like advance(), but lets promise callbacks run before the first timer, after each timer
   * and before it resolves (as vitest's advanceTimersByTimeAsync did). `advanceAsync(0)`
   * only lets them run (and runs timers already due).
   */
  async advanceAsync(ms: number): Promise<void> {
    const end = this.time + ms;
    await letPromisesRun();
    for (let timer = this.takeDue(end); timer !== undefined; timer = this.takeDue(end)) {
      timer.fn();
      await letPromisesRun();
    }
    this.time = Math.max(this.time, end);
  }

  /** Removes and returns the first timer due by `end`, with time moved to when it is due. */
  private takeDue(end: number): ManualTimer | undefined {
    let next: ManualTimer | undefined;
    for (const t of this.timers.values()) {
      if (t.at <= end && (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
    }
    if (next === undefined) return undefined;
    this.timers.delete(next.seq);
    this.time = Math.max(this.time, next.at);
    return next;
  }
}
