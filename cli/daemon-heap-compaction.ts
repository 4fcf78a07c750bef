import { constants, PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import type { Logger } from '../host/log/logger.ts';
import type { Clock, TimerHandle } from '../host/time/clock.ts';

/**
 * How often the daemon has V8 compact its whole old generation once. V8 moves at most a few MiB
 * of objects out of fragmented pages per full collection, so pages left half empty by the
 * start-up burst (thousands of sessions publishing their start-up messages at once) stay
 * committed: at 2,000 boards the heap kept 190 MiB committed for ~100 MiB live. Compacting at
 * every full collection (`--compact-on-every-full-gc`, with a growing factor of 1.2) brought that
 * to 113 MiB, at about a quarter more CPU; two compacting collections a minute at most take back
 * what a start-up or a reconnect storm left, the collections in between stay as cheap as before
 * (docs/benchmarks-issue15-fleet.md, round 4).
 */
export const HEAP_COMPACTION_EVERY_MS = 60_000;

/**
 * Full collections to leave the flag on for: V8 picks the pages to evacuate when marking starts,
 * which may have been before the flag went on, so the second one is sure to have seen it.
 */
const COLLECTIONS_PER_COMPACTION = 2;

const FLAG = 'compact-on-every-full-gc';

/** Calls `onMajor` after every full (mark-compact) collection until the returned stop is called. */
export type WatchMajorGc = (onMajor: () => void) => () => void;

export const watchMajorGc: WatchMajorGc = (onMajor) => {
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) onMajor();
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
};

export interface DaemonHeapCompactionOptions {
  clock: Clock;
  logger: Logger;
  everyMs?: number;
  /** v8.setFlagsFromString (a test records the flags instead). */
  setFlag?: (flag: string) => void;
  watchMajorGc?: WatchMajorGc;
}

/**
 * Every `everyMs`, turns `--compact-on-every-full-gc` on for the next full collections (V8 reads
 * it at each one), then off again. Nothing is collected earlier than V8 would: the compaction
 * rides on the next collection that was coming anyway.
 */
export class DaemonHeapCompaction {
  private timer: TimerHandle | null = null;
  private unwatch: (() => void) | null = null;
  private stopped = false;
  private seen = 0;
  /** Compactions asked for and finished. */
  readonly counts = { armed: 0, done: 0 };
  private readonly everyMs: number;
  private readonly setFlag: (flag: string) => void;
  private readonly watch: WatchMajorGc;

  constructor(private readonly options: DaemonHeapCompactionOptions) {
    this.everyMs = options.everyMs ?? HEAP_COMPACTION_EVERY_MS;
    if (!(this.everyMs > 0)) throw new RangeError(`everyMs must be > 0, got ${String(this.everyMs)}`);
    this.setFlag = options.setFlag ?? ((flag) => v8.setFlagsFromString(flag));
    this.watch = options.watchMajorGc ?? watchMajorGc;
  }

  /** False when the operator set the flag themselves (node flag or NODE_OPTIONS): theirs stands. */
  static wanted(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
    return ![...execArgv, nodeOptions].some((arg) => /compact[-_]on[-_]every[-_]full[-_]gc/.test(arg));
  }

  start(): void {
    if (this.stopped || this.timer !== null || this.unwatch !== null) return;
    this.timer = this.options.clock.setTimeout(() => this.arm(), this.everyMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.options.clock.clearTimeout(this.timer);
    this.timer = null;
    this.disarm();
  }

  private arm(): void {
    this.timer = null;
    if (this.stopped) return;
    this.seen = 0;
    this.counts.armed++;
    this.setFlag(`--${FLAG}`);
    this.unwatch = this.watch(() => {
      if (++this.seen < COLLECTIONS_PER_COMPACTION) return;
      this.disarm();
      this.counts.done++;
      this.options.logger.debug({ collections: this.seen }, 'heap compacted (old generation)');
      this.start();
    });
  }

  private disarm(): void {
    if (this.unwatch === null) return;
    this.unwatch();
    this.unwatch = null;
    this.setFlag(`--no-${FLAG}`);
  }
}
