import { createRequire } from 'node:module';
import type { Logger } from '../host/log/logger.ts';
import type { Clock, TimerHandle } from '../host/time/clock.ts';

/**
 * How often the daemon hands the C heap's free memory back to the kernel. glibc's malloc keeps
 * what was freed (in the middle of its heap, it cannot shrink past it) for later mallocs: after a
 * fleet's start-up (a burst of socket, journal and publish buffers, most freed again) that is
 * about 10 KiB per board of RSS that nothing uses (3,000 boards: the C heap 46 MiB, 26 MiB after
 * one malloc_trim(0), 20 s later still 26.6 MiB; docs/benchmarks-issue15-fleet.md). A minute is
 * often enough to catch a start-up or a reconnect storm soon after; the call runs on a thread
 * of its own, so the event loop does not wait for it.
 */
export const MALLOC_TRIM_EVERY_MS = 60_000;

/** Releases free C heap memory; resolves to whether any was released (malloc_trim's answer). */
export type MallocTrim = () => Promise<boolean>;

const LIBRARY = 'tether-process';

/**
 * glibc's malloc_trim(0), called through ffi-rs (which the daemon has for TCP keepalive) on a
 * thread of its own. Null where it cannot be had (musl and macOS have no malloc_trim; ffi-rs
 * missing for the platform), with the reason.
 */
export function loadMallocTrim(): { trim: MallocTrim; error?: undefined } | { trim: null; error: string } {
  try {
    const ffi = createRequire(import.meta.url)('ffi-rs') as typeof import('ffi-rs');
    // The process's own symbols (dlopen(NULL)): glibc is in them, no library path to guess.
    ffi.open({ library: LIBRARY, path: '' });
    const call = (runInNewThread: boolean) =>
      ffi.load({ library: LIBRARY, funcName: 'malloc_trim', retType: ffi.DataType.I32, paramsType: [ffi.DataType.I64], paramsValue: [0], runInNewThread });
    // Once here, synchronously: a missing symbol throws now rather than in a timer later.
    call(false);
    return { trim: async () => (await call(true)) === 1 };
  } catch (err) {
    return { trim: null, error: err instanceof Error ? err.message : String(err) };
  }
}

export interface MallocTrimmerOptions {
  trim: MallocTrim;
  clock: Clock;
  logger: Logger;
  everyMs?: number;
}

/** Calls `trim` every `everyMs` (one call at a time) until stop(). */
export class MallocTrimmer {
  private timer: TimerHandle | null = null;
  private stopped = false;
  private readonly everyMs: number;
  /** Calls made, and how many released memory. */
  readonly counts = { calls: 0, released: 0 };

  constructor(private readonly options: MallocTrimmerOptions) {
    this.everyMs = options.everyMs ?? MALLOC_TRIM_EVERY_MS;
    if (!(this.everyMs > 0)) throw new RangeError(`everyMs must be > 0, got ${String(this.everyMs)}`);
  }

  start(): void {
    if (this.stopped || this.timer !== null) return;
    this.timer = this.options.clock.setTimeout(() => void this.run(), this.everyMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.options.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private async run(): Promise<void> {
    this.timer = null;
    if (this.stopped) return;
    const started = this.options.clock.now();
    try {
      this.counts.calls++;
      if (await this.options.trim()) this.counts.released++;
      this.options.logger.debug({ ms: Math.round(this.options.clock.now() - started) }, 'malloc_trim: free C heap memory handed back');
    } catch (err) {
      // Not worth stopping for: the memory stays with the process, as without the trim.
      this.options.logger.debug({ err: err instanceof Error ? err.message : String(err) }, 'malloc_trim failed');
    }
    this.start();
  }
}
