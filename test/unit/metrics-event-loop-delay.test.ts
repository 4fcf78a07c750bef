import { afterEach, describe, expect, it } from 'vitest';
import { EventLoopDelay, lateness } from '../../host/metrics/event-loop-delay.ts';
import { waitFor } from '../support/wait-for.ts';

describe('EventLoopDelay', () => {
  let delay: EventLoopDelay | undefined;
  afterEach(() => delay?.close());

  it('lateness() is the time between runs less the period, never below 0', () => {
    expect(lateness(10_000_000, 10)).toBe(0);
    expect(lateness(12_500_000, 10)).toBe(2.5);
    expect(lateness(9_000_000, 10)).toBe(0); // a run a little early is not late
    expect(lateness(250_000_000, 10)).toBe(240);
  });

  it('an idle loop is not reported as late by the resolution, and a blocked one by about how long it was blocked', async () => {
    // perf_hooks records the time between its timer's runs: an idle loop at resolution 50 would
    // read p50 >= 50 ms without the correction.
    delay = new EventLoopDelay(50);
    await waitFor(() => peekSamples(delay!) >= 10, { what: '10 samples of an idle loop', timeoutMs: 20_000 });
    const idle = delay.take();
    expect(idle.p50Ms).toBeLessThan(50);
    // After a take() (histogram reset) perf_hooks records from its second run on: start there.
    await waitFor(() => peekSamples(delay!) >= 1, { what: 'the first sample of the new window', timeoutMs: 20_000 });
    const until = performance.now() + 200;
    while (performance.now() < until); // block the loop on purpose
    await waitFor(() => peekSamples(delay!) >= 3, { what: 'samples after the block', timeoutMs: 20_000 });
    const blocked = delay.take();
    expect(blocked.maxMs).toBeGreaterThanOrEqual(140);
  });
});

/** The samples so far in the current window (take() starts a new one; this only looks). */
function peekSamples(d: EventLoopDelay): number {
  return (d as unknown as { histogram: { count: number } }).histogram.count;
}
