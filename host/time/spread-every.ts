import type { Clock, TimerHandle } from './clock.ts';

export interface SpreadEveryOptions {
  /**
   * The shortest time between two slices (default 100 ms): a period is cut into at most
   * periodMs / minSliceMs slices, and never into more slices than there are items.
   */
  minSliceMs?: number;
  /** Its timers do not keep the process alive (Node's unref()), for a watchdog-like loop. */
  unref?: boolean;
}

/**
 * Runs `fn` on every item of `items()` once per `periodMs`, spread over the period in slices
 * (issue 15): at 10,000 boards, a check of every board in one turn of the event loop every 5 s
 * is a turn of tens of milliseconds, the event-loop delay every other board's PING and PONG
 * waits behind. Here each item keeps its own phase in the period (item i of n is visited at
 * (i + 1) / n of it, rounded up to the next slice), so a slice holds about n / slices items.
 *
 * - An item is visited once per period: after the first `periodMs` every item has been
 *   visited once (the last in the slice that ends the period), as `every(clock, periodMs, ...)`
 *   over all of them would have; one item alone is visited exactly every `periodMs`.
 * - `items()` is read once per period (the list may change between periods).
 * - An item whose `fn` throws does not stop the others (the error goes to `onError`, or is
 *   rethrown after the slice when there is none).
 *
 * Returns the function that stops it (no timer is left behind).
 */
export function spreadEvery<T>(
  clock: Clock,
  periodMs: number,
  items: () => readonly T[],
  fn: (item: T) => void,
  options: SpreadEveryOptions & { onError?: (err: unknown, item: T) => void } = {},
): () => void {
  const minSliceMs = options.minSliceMs ?? 100;
  if (!(periodMs > 0) || !Number.isFinite(periodMs)) throw new RangeError(`periodMs must be a number > 0, got ${String(periodMs)}`);
  if (!(minSliceMs > 0) || !Number.isFinite(minSliceMs)) throw new RangeError(`minSliceMs must be a number > 0, got ${String(minSliceMs)}`);
  const maxSlices = Math.max(1, Math.floor(periodMs / minSliceMs));
  let list: readonly T[] = [];
  let slices = 1;
  /** Slices run in this period (1..slices); 0 before the first of a period. */
  let slice = 0;
  let periodStart = clock.now();
  let handle: TimerHandle | undefined;
  let stopped = false;

  const beginPeriod = () => {
    list = items();
    slices = Math.min(maxSlices, Math.max(1, list.length));
    slice = 0;
  };
  const arm = () => {
    // The slice's end in the period, from the period's start: no drift from late timers.
    const at = periodStart + (periodMs * (slice + 1)) / slices;
    handle = clock.setTimeout(tick, Math.max(0, at - clock.now()));
    if (options.unref) (handle as { unref?: () => void }).unref?.();
  };
  const tick = () => {
    handle = undefined;
    if (stopped) return;
    slice++;
    // Integers: the last slice ends at exactly list.length.
    const from = Math.floor(((slice - 1) * list.length) / slices);
    const to = Math.floor((slice * list.length) / slices);
    let failure: { err: unknown } | null = null;
    for (let i = from; i < to; i++) {
      try {
        fn(list[i]!);
      } catch (err) {
        if (options.onError) options.onError(err, list[i]!);
        else failure ??= { err };
      }
      if (stopped) return;
    }
    if (slice >= slices) {
      periodStart += periodMs;
      // Fell a whole period behind (the loop was blocked): start the next one from now.
      if (periodStart + periodMs < clock.now()) periodStart = clock.now();
      beginPeriod();
    }
    arm();
    if (failure) throw failure.err;
  };

  beginPeriod();
  arm();
  return () => {
    stopped = true;
    if (handle !== undefined) clock.clearTimeout(handle);
    handle = undefined;
  };
}
