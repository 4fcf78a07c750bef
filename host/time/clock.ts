// The module's binding, not the global: `globalThis.performance` is a lazy getter that runs on
// every read (Node 20), and the clock is read on every heartbeat of every board.
import { performance } from 'node:perf_hooks';

/**
 * Time as the host logic sees it. Everything time-dependent takes a Clock so unit tests
 * can drive it with fake time (ManualClock in tether/emulator) and production the real one.
 */
export interface Clock {
  /** Milliseconds on a monotonic scale. */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Wall-clock time, for timestamps people read ("last seen at"); never for measuring durations. */
export interface WallClock {
  /** Milliseconds since the Unix epoch. */
  wallNow(): number;
}

export type TimerHandle = ReturnType<typeof globalThis.setTimeout>;

export const systemClock: Clock & WallClock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle),
};

/**
 * clock.clearTimeout(handle) then clock.setTimeout(callback, ms), through the clock's own
 * reschedule() where it has one (SharedTimers: the same entry again, nothing allocated). For a
 * timer set again and again by one owner; the owner must keep no other copy of `handle`.
 */
export function rearm(clock: Clock, handle: TimerHandle | undefined, callback: () => void, ms: number): TimerHandle {
  const own = (clock as Partial<Rescheduling>).reschedule;
  if (own !== undefined) return own.call(clock, handle, callback, ms);
  if (handle !== undefined) clock.clearTimeout(handle);
  return clock.setTimeout(callback, ms);
}

/** A Clock that can set a timer again in the same handle (SharedTimers). */
export interface Rescheduling {
  reschedule(handle: TimerHandle | undefined, callback: () => void, ms: number): TimerHandle;
}

/** Resolves after `ms` on `clock`. */
export function delay(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}

/**
 * Runs `fn` every `ms` on `clock` (each run scheduled after the previous one ran); returns
 * the function that stops it.
 */
export function every(clock: Clock, ms: number, fn: () => void): () => void {
  let handle: TimerHandle | undefined;
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    fn();
    if (!stopped) handle = clock.setTimeout(tick, ms);
  };
  handle = clock.setTimeout(tick, ms);
  return () => {
    stopped = true;
    if (handle !== undefined) clock.clearTimeout(handle);
  };
}
