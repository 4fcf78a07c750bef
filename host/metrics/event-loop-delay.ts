import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export interface EventLoopDelaySnapshot {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Samples in the window (0: nothing measured yet, the figures are 0). */
  samples: number;
}

/**
 * How late the event loop turns (perf_hooks monitorEventLoopDelay: a timer every
 * `resolutionMs`, each sample its delay), over the window since the previous take(). A daemon
 * that serves thousands of boards must keep this low: every PING, PONG and PUBLISH waits behind
 * whatever blocks the loop.
 */
export class EventLoopDelay {
  private readonly histogram: IntervalHistogram;

  constructor(resolutionMs = 10) {
    this.histogram = monitorEventLoopDelay({ resolution: resolutionMs });
    this.histogram.enable();
  }

  /** The delays since the previous take() (or since construction), then starts a new window. */
  take(): EventLoopDelaySnapshot {
    const h = this.histogram;
    const samples = h.count;
    const ms = (ns: number) => (samples === 0 ? 0 : ns / 1e6);
    const snapshot = { p50Ms: ms(h.percentile(50)), p99Ms: ms(h.percentile(99)), maxMs: ms(h.max), samples };
    h.reset();
    return snapshot;
  }

  close(): void {
    this.histogram.disable();
  }
}
