import { describe, expect, it } from 'vitest';
import { ExponentialBackoff } from '../../host/transport/backoff.ts';

const take = (b: ExponentialBackoff, n: number) => Array.from({ length: n }, () => b.next());

describe('ExponentialBackoff', () => {
  it('grows by the factor and stops at the cap (no jitter)', () => {
    const b = new ExponentialBackoff({ initialMs: 100, maxMs: 1000, factor: 2, jitter: 'none' });
    expect(take(b, 6)).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(b.attempt).toBe(6);
  });

  it('uses the documented defaults: 250 ms, x2, capped at 30 s', () => {
    const b = new ExponentialBackoff({ jitter: 'none' });
    expect(take(b, 3)).toEqual([250, 500, 1000]);
    const capped = take(b, 20);
    expect(capped.at(-1)).toBe(30_000);
    expect(Math.max(...capped)).toBe(30_000);
  });

  it('stays capped after very many attempts (no overflow to Infinity or NaN)', () => {
    const b = new ExponentialBackoff({ initialMs: 100, maxMs: 5000, jitter: 'none' });
    const delays = take(b, 5000);
    expect(delays.at(-1)).toBe(5000);
    const j = new ExponentialBackoff({ initialMs: 100, maxMs: 5000, random: () => 0.5 });
    const jittered = take(j, 5000);
    expect(Number.isFinite(jittered.at(-1))).toBe(true);
    expect(jittered.at(-1)).toBeLessThanOrEqual(5000);
  });

  it('full jitter: random 0 gives the floor (10% of initialMs), random ~1 gives the ceiling', () => {
    const low = new ExponentialBackoff({ initialMs: 200, maxMs: 10_000, random: () => 0 });
    expect(take(low, 4)).toEqual([20, 20, 20, 20]);
    const high = new ExponentialBackoff({ initialMs: 200, maxMs: 1000, random: () => 0.999999 });
    expect(take(high, 5)).toEqual([200, 400, 800, 1000, 1000]);
  });

  it('full jitter: every delay is within [floor, min(max, initial * factor^n)]', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const b = new ExponentialBackoff({ initialMs: 250, maxMs: 30_000, factor: 2, random });
    for (let n = 0; n < 200; n++) {
      const ceiling = Math.min(30_000, 250 * 2 ** n);
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(25);
      expect(d).toBeLessThanOrEqual(ceiling);
      expect(Number.isInteger(d)).toBe(true);
    }
  });

  it('full jitter draws from the whole range (midpoint random gives the midpoint)', () => {
    const b = new ExponentialBackoff({ initialMs: 100, maxMs: 10_000, random: () => 0.5 });
    // floor 10; ceilings 100, 200, 400 -> 10 + 0.5 * (c - 10)
    expect(take(b, 3)).toEqual([55, 105, 205]);
  });

  it('never returns less than 1 ms, even for a tiny initialMs', () => {
    const b = new ExponentialBackoff({ initialMs: 1, maxMs: 1, random: () => 0 });
    expect(take(b, 3)).toEqual([1, 1, 1]);
  });

  it('clamps a misbehaving random source into range', () => {
    expect(new ExponentialBackoff({ initialMs: 100, random: () => -5 }).next()).toBe(10);
    expect(new ExponentialBackoff({ initialMs: 100, random: () => 7 }).next()).toBe(100);
    expect(new ExponentialBackoff({ initialMs: 100, random: () => Number.NaN }).next()).toBe(100);
  });

  it('reset() starts over from the first delay', () => {
    const b = new ExponentialBackoff({ initialMs: 100, maxMs: 10_000, jitter: 'none' });
    take(b, 4);
    expect(b.attempt).toBe(4);
    b.reset();
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(100);
    expect(b.attempt).toBe(1);
  });

  it.each([
    [{ initialMs: 0 }, /initialMs must be a finite number > 0, got 0/],
    [{ initialMs: -1 }, /initialMs/],
    [{ initialMs: Number.NaN }, /initialMs/],
    [{ initialMs: Number.POSITIVE_INFINITY }, /initialMs/],
    [{ initialMs: 500, maxMs: 100 }, /maxMs must be a finite number >= initialMs \(500\), got 100/],
    [{ maxMs: Number.POSITIVE_INFINITY }, /maxMs/],
    [{ factor: 0.5 }, /factor must be a finite number >= 1, got 0.5/],
    [{ factor: Number.NaN }, /factor/],
    [{ jitter: 'half' as 'full' }, /jitter must be 'full' or 'none', got half/],
    [{ random: 3 as unknown as () => number }, /random must be a function/],
  ])('rejects bad options %o with a RangeError', (options, message) => {
    expect(() => new ExponentialBackoff(options)).toThrow(RangeError);
    expect(() => new ExponentialBackoff(options)).toThrow(message);
  });
});
