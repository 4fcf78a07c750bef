import v8 from 'node:v8';
import type { Logger } from '../host/log/logger.ts';
import type { Clock, TimerHandle } from '../host/time/clock.ts';
import { operatorGaveFlag } from './daemon-heap-settings.ts';

/**
 * Quiet after the last board session came up before a burst of starts counts as over. Sessions
 * come up a few hundred a second while a large fleet starts (or reconnects after the broker
 * came back).
 */
export const HEAP_SETTLE_QUIET_MS = 10_000;
/**
 * How long V8 stays in its memory-saving mode: its memory reducer makes a few compacting
 * collections, one after the other (three in 3 s at 9,900 boards, each stopping the event loop
 * for about 60 ms), then the mode goes off again (left on, it keeps the young generation small
 * and makes many more collections: CPU 6.0 against 5.4 m% per board).
 */
export const HEAP_SETTLE_REDUCE_MS = 10_000;
/** Board sessions up in one burst before it is worth settling: a few boards leave little garbage. */
export const HEAP_SETTLE_MIN_SESSIONS = 100;
/**
 * The old generation's growing factor once the start is over (1.2x, against 1.5x while starting:
 * daemon-heap-settings.ts). A fleet at steady state promotes little (about 0.7 MB/s at 9,900
 * boards), so a tighter factor costs a full collection every minute or two, while 1.5x let the
 * heap fill back up to half again its live size.
 */
export const SETTLED_HEAP_GROWING_PERCENT = 20;

export interface HeapSize {
  /** Bytes the V8 heap holds from the system. */
  committed: number;
  /** Bytes in live and not yet collected objects. */
  used: number;
}

export interface HeapSettlerOptions {
  clock: Clock;
  logger: Logger;
  /** v8.setFlagsFromString, replaceable in tests. */
  setFlags?: (flags: string) => void;
  heapSize?: () => HeapSize;
  /** The node flags the daemon runs with (process.execArgv and NODE_OPTIONS): a heap flag there is the operator's. */
  execArgv?: readonly string[];
  nodeOptions?: string;
  quietMs?: number;
  reduceMs?: number;
  minSessions?: number;
}

/**
 * Hands a fleet's start-up memory back once the start is over. Thousands of boards starting at
 * once leave the old generation fragmented: objects that lived just long enough to be promoted
 * (each start-up publish waits for its PUBACK while the event loop is saturated) died there, and
 * V8 keeps the pages they were on. At 9,900 boards the heap held 555 MiB for 378 MiB of live
 * data, so RSS stayed at 71 KiB per board. V8 releases such pages in its memory-saving mode
 * (`--optimize-for-size`, the mode Chrome puts background tabs in): its memory reducer compacts
 * the heap in a few short collections. The settler turns that mode on after every burst of at
 * least `minSessions` board sessions coming up, once `quietMs` passed without one, and off again
 * after `reduceMs`; then it sets the tighter growing factor. At 9,900 boards: heap 555 -> 451 MiB
 * committed in three collections of ~60 ms, RSS 60 KiB per board (docs/benchmarks-issue15-fleet.md).
 * A flag the operator gave (`--optimize-for-size`, a growing factor) is left alone.
 */
export class HeapSettler {
  private readonly setFlags: (flags: string) => void;
  private readonly heapSize: () => HeapSize;
  private readonly quietMs: number;
  private readonly reduceMs: number;
  private readonly minSessions: number;
  /** The operator runs V8 in memory-saving mode already: nothing to switch. */
  private readonly operatorSavesMemory: boolean;
  private readonly operatorChoseGrowing: boolean;
  private timer: TimerHandle | null = null;
  private burst = 0;
  private lastUpAt = -Infinity;
  private reducing: HeapSize | null = null;
  private stopped = false;
  private settled = 0;

  constructor(private readonly options: HeapSettlerOptions) {
    this.setFlags = options.setFlags ?? ((flags) => v8.setFlagsFromString(flags));
    this.heapSize = options.heapSize ?? (() => {
      const h = v8.getHeapStatistics();
      return { committed: h.total_heap_size, used: h.used_heap_size };
    });
    this.quietMs = options.quietMs ?? HEAP_SETTLE_QUIET_MS;
    this.reduceMs = options.reduceMs ?? HEAP_SETTLE_REDUCE_MS;
    this.minSessions = options.minSessions ?? HEAP_SETTLE_MIN_SESSIONS;
    this.operatorSavesMemory = operatorGaveFlag('optimize-for-size', options.execArgv, options.nodeOptions);
    this.operatorChoseGrowing = operatorGaveFlag('heap-growing-percent', options.execArgv, options.nodeOptions);
  }

  /** Bursts settled so far. */
  get settles(): number {
    return this.settled;
  }

  /** A board's broker session came up (the gateway's `brokerUp` for a device). */
  sessionUp(): void {
    if (this.stopped || this.operatorSavesMemory) return;
    this.burst++;
    this.lastUpAt = this.options.clock.now();
    // One timer for the burst: it looks at the last start when it fires (no timer per session).
    if (this.timer === null && this.reducing === null) this.arm(this.quietMs);
  }

  /** No timer left, and V8 out of memory-saving mode if it was in it. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) this.options.clock.clearTimeout(this.timer);
    this.timer = null;
    if (this.reducing !== null) this.setFlags('--no-optimize-for-size');
    this.reducing = null;
  }

  private arm(ms: number): void {
    this.timer = this.options.clock.setTimeout(() => {
      this.timer = null;
      this.onTimer();
    }, Math.max(0, ms));
  }

  private onTimer(): void {
    if (this.stopped) return;
    if (this.reducing !== null) {
      this.finishReduce(this.reducing);
      return;
    }
    const quietFor = this.options.clock.now() - this.lastUpAt;
    if (quietFor < this.quietMs) {
      this.arm(this.quietMs - quietFor);
      return;
    }
    const burst = this.burst;
    this.burst = 0;
    if (burst < this.minSessions) return;
    this.reducing = this.heapSize();
    this.setFlags('--optimize-for-size');
    this.options.logger.debug({ sessions: burst, heapCommittedMiB: mib(this.reducing.committed), heapUsedMiB: mib(this.reducing.used) }, 'board sessions started: V8 in memory-saving mode for a moment, to hand back the start-up memory');
    this.arm(this.reduceMs);
  }

  private finishReduce(before: HeapSize): void {
    this.reducing = null;
    this.setFlags('--no-optimize-for-size');
    if (!this.operatorChoseGrowing) this.setFlags(`--heap-growing-percent=${SETTLED_HEAP_GROWING_PERCENT}`);
    this.settled++;
    const after = this.heapSize();
    this.options.logger.info(
      { heapCommittedMiB: { before: mib(before.committed), after: mib(after.committed) }, heapUsedMiB: mib(after.used) },
      `start-up memory handed back: V8 heap ${mib(before.committed)} -> ${mib(after.committed)} MiB`,
    );
    // Sessions that came up meanwhile start the next burst.
    if (this.burst > 0) this.arm(this.quietMs);
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / 104857.6) / 10;
}
