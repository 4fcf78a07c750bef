import { describe, expect, it } from 'vitest';
import { Histogram, Registry } from 'prom-client';
import { FastHistogram } from '../../host/metrics/fast-histogram.ts';
import { scrapeToText } from '../../host/metrics/scrape-in-turns.ts';

const BUCKETS = [0.001, 0.01, 0.1, 1, 2.5];

describe('FastHistogram', () => {
  it("exposes exactly what prom-client's Histogram exposes for the same observations", async () => {
    const theirs = new Registry();
    const reference = new Histogram({ name: 'h_seconds', help: 'a histogram', labelNames: ['device'], buckets: BUCKETS, registers: [theirs] });
    const fast = new FastHistogram('h_seconds', 'a histogram', BUCKETS);
    const observations: Record<string, number[]> = { a: [0.0005, 0.001, 0.05, 0.05, 3], b: [], c: [0.2], 'q"\\\n': [2] };
    for (const [device, values] of Object.entries(observations)) {
      reference.zero({ device });
      const observe = fast.series({ device });
      for (const v of values) {
        reference.observe({ device }, v);
        observe(v);
      }
    }
    const text = await scrapeToText([fast], undefined);
    expect(text).toBe(await theirs.metrics());
    expect(text).toMatch(/^h_seconds_bucket\{le="0\.1",device="a"\} 4$/m);
    expect(text).toMatch(/^h_seconds_bucket\{le="\+Inf",device="a"\} 5$/m);
    expect(text).toMatch(/^h_seconds_count\{device="b"\} 0$/m);
  });

  it('reset() zeroes every series; a non-finite value is not counted', async () => {
    const fast = new FastHistogram('h_seconds', 'a histogram', BUCKETS);
    const observe = fast.series({ device: 'a' });
    observe(0.5);
    observe(Number.NaN);
    expect(await scrapeToText([fast], undefined)).toMatch(/^h_seconds_count\{device="a"\} 1$/m);
    fast.reset();
    expect(await scrapeToText([fast], undefined)).toMatch(/^h_seconds_count\{device="a"\} 0$/m);
    expect(await scrapeToText([fast], undefined)).toMatch(/^h_seconds_bucket\{le="1",device="a"\} 0$/m);
  });
});
