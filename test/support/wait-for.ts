export interface WaitForOptions {
  /** What is awaited, for the failure message: "the board to be ready". */
  what: string;
  /** Deadline from the call. Default 5000 ms. */
  timeoutMs?: number;
  /** Pause between checks. Default 10 ms. */
  intervalMs?: number;
  /** What the failure message adds about the current state: "states: init, lost". */
  detail?: () => string;
}

type Met<T> = Exclude<T, false | 0 | '' | null | undefined>;

/**
 * The one way tests wait for a condition in real time: calls `check` at once and then every
 * `intervalMs` until it returns a truthy value (which it resolves with), or rejects once
 * `timeoutMs` have passed, naming `what` and the deadline. `check` may be async; if it throws,
 * waitFor rejects with that error at once (a check can fail fast, e.g. "the process exited").
 *
 * Unit tests on fake time do not need this: they advance a ManualClock.
 */
export async function waitFor<T>(check: () => T | Promise<T>, options: WaitForOptions): Promise<Met<T>> {
  const { what, timeoutMs = 5000, intervalMs = 10, detail } = options;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as Met<T>;
    if (performance.now() >= deadline) {
      const extra = detail ? ` (${detail()})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${extra}`);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(intervalMs, deadline - performance.now()))));
  }
}

export interface EventuallyOptions {
  /** Deadline from the call. Default 5000 ms. */
  timeoutMs?: number;
  /** Pause between tries. Default 10 ms. */
  intervalMs?: number;
}

/**
 * waitFor for an assertion: calls `assert` until it stops throwing, or rethrows its last error
 * once `timeoutMs` have passed (so the failure shows the assertion's own diff, with the deadline).
 */
export async function eventually(assert: () => unknown | Promise<unknown>, options: EventuallyOptions = {}): Promise<void> {
  const { timeoutMs = 5000, intervalMs = 10 } = options;
  let last: unknown;
  await waitFor(
    async () => {
      try {
        await assert();
        return true;
      } catch (error) {
        last = error;
        return false;
      }
    },
    { what: 'an assertion to pass', timeoutMs, intervalMs },
  ).catch((timeout: Error) => {
    if (last instanceof Error) last.message = `${last.message}\n(still failing after ${timeoutMs} ms: ${timeout.message})`;
    throw last ?? timeout;
  });
}

/**
 * An awaited event with a deadline: resolves as `promise` does, or rejects after `timeoutMs`
 * naming `what` and what `detail` says of the state then. Leaves no timer behind.
 */
export async function within<T>(promise: Promise<T>, options: WaitForOptions): Promise<T> {
  const { what, timeoutMs = 5000, detail } = options;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail ? ` (${detail()})` : ''}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
