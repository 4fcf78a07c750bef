import type { Clock, TimerHandle, WallClock } from '../../host/time/clock.ts';

interface ManualTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A Clock that moves only when told: fake time for unit tests, the Espruino stand-in and
 * simulations.
 * Timers due at the same time run in the order they were set.
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
    for (;;) {
      let next: ManualTimer | undefined;
      for (const t of this.timers.values()) {
        if (t.at <= end && (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      }
      if (next === undefined) break;
      this.timers.delete(next.seq);
      this.time = Math.max(this.time, next.at);
      next.fn();
    }
    this.time = end;
  }
}
