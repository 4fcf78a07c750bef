import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RttStats } from '../../host/session/rtt-stats.ts';

describe('RttStats', () => {
  it('reports NaN for every statistic before the first sample', () => {
    const s = new RttStats();
    expect(s.count).toBe(0);
    for (const v of [s.last, s.mean, s.p50, s.p99, s.min, s.max, s.smoothed, s.jitter]) expect(v).toBeNaN();
  });

  it('computes nearest-rank percentiles, mean, min and max on known data', () => {
    const s = new RttStats();
    // 1..100 shuffled: p50 = 50, p99 = 99 by nearest rank.
    const values = Array.from({ length: 100 }, (_, i) => ((i * 37) % 100) + 1);
    for (const v of values) s.add(v);
    expect(s.count).toBe(100);
    expect(s.p50).toBe(50);
    expect(s.p99).toBe(99);
    expect(s.percentile(100)).toBe(100);
    expect(s.percentile(1)).toBe(1);
    expect(s.percentile(7)).toBe(7); // (7 / 100) * 100 is 7.000000000000001 in floating point
    expect(s.mean).toBe(50.5);
    expect(s.min).toBe(1);
    expect(s.max).toBe(100);
    expect(s.last).toBe(values[99]);
  });

  it('p99 of a small window is its maximum; p50 of an even count is the lower middle', () => {
    const s = new RttStats();
    for (const v of [40, 10, 30, 20]) s.add(v);
    expect(s.p50).toBe(20);
    expect(s.p99).toBe(40);
    s.add(5);
    expect(s.p50).toBe(20);
    expect(s.min).toBe(5);
  });

  it('keeps only the last windowSize samples (default 256)', () => {
    const s = new RttStats();
    expect(s.windowSize).toBe(256);
    for (let i = 0; i < 1000; i++) s.add(i);
    expect(s.count).toBe(256);
    expect(s.total).toBe(1000);
    expect(s.min).toBe(744);
    expect(s.max).toBe(999);
    expect(s.mean).toBe((744 + 999) / 2);

    const small = new RttStats({ windowSize: 3 });
    for (const v of [100, 1, 2, 3]) small.add(v);
    expect(small.max).toBe(3);
  });

  it('keeps window samples to the microsecond (4 bytes each), up to 71 minutes; last and the smoothed values keep full precision', () => {
    const s = new RttStats();
    s.add(13.2704);
    s.add(0.0004);
    s.add(2.0006);
    expect([s.min, s.p50, s.max]).toEqual([0, 2.001, 13.27]);
    expect(s.mean).toBeCloseTo((13.27 + 0 + 2.001) / 3, 12);
    expect(s.last).toBe(2.0006);
    expect(s.smoothed).not.toBe(toMicroseconds(s.smoothed)); // EWMA of the exact samples
    s.add(5e9); // longer than the window can hold: kept as its largest value
    expect(s.max).toBe(4_294_967.295);
    expect(s.last).toBe(5e9);
  });

  it('smooths like TCP: SRTT seeded with the first sample, RTTVAR with half of it', () => {
    const s = new RttStats();
    s.add(100);
    expect(s.smoothed).toBe(100);
    expect(s.jitter).toBe(50);
    s.add(200);
    // RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 62.5 (with the old SRTT); SRTT = 7/8 * 100 + 1/8 * 200.
    expect(s.jitter).toBe(62.5);
    expect(s.smoothed).toBe(112.5);
  });

  it('the EWMA converges to a constant RTT and jitter decays towards 0', () => {
    const s = new RttStats();
    s.add(500);
    for (let i = 0; i < 200; i++) s.add(20);
    expect(s.smoothed).toBeCloseTo(20, 6);
    expect(s.jitter).toBeLessThan(1e-6);
  });

  it('reset() forgets everything', () => {
    const s = new RttStats();
    s.add(10);
    s.reset();
    expect(s.count).toBe(0);
    expect(s.total).toBe(0);
    expect(s.smoothed).toBeNaN();
    s.add(30);
    expect(s.smoothed).toBe(30);
    expect(s.p50).toBe(30);
  });

  it('rejects bad samples and options', () => {
    const s = new RttStats();
    for (const bad of [-1, Number.NaN, Infinity]) expect(() => s.add(bad)).toThrow(RangeError);
    expect(s.count).toBe(0);
    expect(() => s.percentile(0)).toThrow(/percentile must be in \(0, 100\]/);
    expect(() => s.percentile(101)).toThrow(RangeError);
    expect(() => new RttStats({ windowSize: 0 })).toThrow(/windowSize must be an integer > 0/);
    expect(() => new RttStats({ alpha: 0 })).toThrow(/alpha must be in \(0, 1\]/);
    expect(() => new RttStats({ beta: 2 })).toThrow(/beta must be in \(0, 1\]/);
  });

  it('window statistics match a direct computation over the last N samples (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 100 }),
        fc.integer({ min: 1, max: 100 }),
        (windowSize, values, p) => {
          const s = new RttStats({ windowSize });
          for (const v of values) s.add(v);
          const window = values.slice(-windowSize).sort((a, b) => a - b);
          expect(s.count).toBe(window.length);
          expect(s.min).toBe(window[0]);
          expect(s.max).toBe(window[window.length - 1]);
          const rank = s.percentile(p);
          // Nearest rank: at least p% of samples <= it, and fewer than p% strictly below it.
          expect(window.filter((v) => v <= rank).length * 100).toBeGreaterThanOrEqual(p * window.length);
          expect(window.filter((v) => v < rank).length * 100).toBeLessThan(p * window.length);
          expect(s.smoothed).toBeGreaterThanOrEqual(Math.min(...values));
          expect(s.smoothed).toBeLessThanOrEqual(Math.max(...values));
        },
      ),
    );
  });
});

/** What the window keeps of a sample: whole microseconds. */
const toMicroseconds = (ms: number) => Math.round(ms * 1000) / 1000;

describe('RttStats sharing one sort scratch', () => {
  it('boards asked in turn each get their own percentiles, before and after new samples', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.double({ min: 0, max: 5000, noNaN: true }), { minLength: 1, maxLength: 300 }), { minLength: 2, maxLength: 4 }),
        fc.array(fc.tuple(fc.nat(3), fc.double({ min: 0, max: 5000, noNaN: true })), { maxLength: 10 }),
        (windows, later) => {
          const stats = windows.map((w) => {
            const s = new RttStats({ windowSize: 256 });
            for (const ms of w) s.add(ms);
            return s;
          });
          const kept = windows.map((w) => w.slice(-256).map(toMicroseconds));
          const reference = (i: number, p: number) => {
            const sorted = [...kept[i]!].sort((a, b) => a - b);
            return sorted[Math.ceil((p * sorted.length) / 100) - 1];
          };
          const check = () => {
            for (let i = 0; i < stats.length; i++) {
              expect(stats[i]!.p50).toBe(reference(i, 50));
              expect(stats[i]!.p99).toBe(reference(i, 99));
              expect(stats[i]!.min).toBe(Math.min(...kept[i]!));
              expect(stats[i]!.max).toBe(Math.max(...kept[i]!));
            }
          };
          check();
          for (const [which, ms] of later) {
            const i = which % stats.length;
            stats[i]!.add(ms);
            kept[i]!.push(toMicroseconds(ms));
            kept[i] = kept[i]!.slice(-256);
            check();
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('a full default window (sorted in the whole shared scratch) and a smaller one asked in turn each get their own percentiles', () => {
    const full = new RttStats();
    const small = new RttStats({ windowSize: 5 });
    const values: number[] = [];
    for (let i = 0; i < 600; i++) {
      const v = (i * 7919) % 1000; // not in order
      values.push(v);
      full.add(v);
      if (i % 3 === 0) small.add(v / 10);
    }
    const window = values.slice(-256).sort((a, b) => a - b);
    for (let k = 0; k < 3; k++) {
      expect(full.p50).toBe(window[127]);
      expect(full.p99).toBe(window[Math.ceil(0.99 * 256) - 1]);
      expect([full.min, full.max]).toEqual([window[0], window[255]]);
      expect(small.count).toBe(5);
      expect(small.max).toBeGreaterThanOrEqual(small.p50);
    }
  });
});
