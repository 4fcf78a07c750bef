import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export interface EventLoopDelaySnapshot {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Samples in the window (0: nothing measured yet, the figures are 0). */
  samples: number;
}

/**
 * How late the event loop turns, over the window since the previous take(). A daemon that
 * serves thousands of boards must keep this low: every PING, PONG and PUBLISH waits behind
 * whatever blocks the loop.
 *
 * perf_hooks monitorEventLoopDelay runs a timer every `resolutionMs` and records the whole time
 * between two of its runs, not how late a run was: an idle loop records about `resolutionMs`
 * (measured on node 20: p50 10.0 ms, p99 13.0 ms at resolution 10 with nothing to do). The
 * delay is that time less the resolution (lateness()). After a reset it records from its
 * second run on, so a block right after a take() is missed: one sample per window.
 */
export class EventLoopDelay {
  private readonly histogram: IntervalHistogram;

  constructor(private readonly resolutionMs = 10) {
    this.histogram = monitorEventLoopDelay({ resolution: resolutionMs });
    this.histogram.enable();
  }

  /** The delays since the previous take() (or since construction), then starts a new window. */
  take(): EventLoopDelaySnapshot {
    const h = this.histogram;
    const samples = h.count;
    const ms = (ns: number) => (samples === 0 ? 0 : lateness(ns, this.resolutionMs));
    const snapshot = { p50Ms: ms(h.percentile(50)), p99Ms: ms(h.percentile(99)), maxMs: ms(h.max), samples };
    h.reset();
    return snapshot;
  }

  close(): void {
    this.histogram.disable();
  }
}

/** How late a timer run was, in ms, from the time since the previous run (ns) and the period (ms). */
export function lateness(intervalNs: number, periodMs: number): number {
  return Math.max(0, intervalNs / 1e6 - periodMs);
}
