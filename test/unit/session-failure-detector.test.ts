import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FixedTimeoutDetector } from '../../host/session/failure-detector.ts';

describe('FixedTimeoutDetector', () => {
  const schedule = { intervalMs: 1000, misses: 3 };

  it('is never lost before the first heartbeat, and its deadline is Infinity', () => {
    const d = new FixedTimeoutDetector(schedule);
    expect(d.kind).toBe('fixed');
    expect(d.deadline()).toBe(Infinity);
    expect(d.isLost(0)).toBe(false);
    expect(d.isLost(1e12)).toBe(false);
  });

  it('is not lost just before interval x misses after the last heartbeat, and lost at it', () => {
    const d = new FixedTimeoutDetector(schedule);
    d.heartbeat(10_000);
    expect(d.boundMs).toBe(3000);
    expect(d.deadline()).toBe(13_000);
    expect(d.isLost(12_999)).toBe(false);
    expect(d.isLost(12_999.999)).toBe(false);
    expect(d.isLost(13_000)).toBe(true);
    expect(d.isLost(20_000)).toBe(true);
  });

  it('a heartbeat pushes the deadline out, even after being lost', () => {
    const d = new FixedTimeoutDetector(schedule);
    d.heartbeat(0);
    expect(d.isLost(3000)).toBe(true);
    d.heartbeat(3500);
    expect(d.isLost(3500)).toBe(false);
    expect(d.deadline()).toBe(6500);
  });

  it('ignores heartbeat timestamps older than the newest one', () => {
    const d = new FixedTimeoutDetector(schedule);
    d.heartbeat(5000);
    d.heartbeat(4000);
    expect(d.deadline()).toBe(8000);
  });

  it('reset() forgets the last heartbeat', () => {
    const d = new FixedTimeoutDetector(schedule);
    d.heartbeat(0);
    d.reset();
    expect(d.deadline()).toBe(Infinity);
    expect(d.isLost(10_000)).toBe(false);
  });

  it('isLost(now) is exactly now >= deadline() (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60_000 }),
        fc.integer({ min: 1, max: 10 }),
        fc.array(fc.integer({ min: 0, max: 1e9 }), { maxLength: 20 }),
        fc.integer({ min: 0, max: 2e9 }),
        (intervalMs, misses, beats, now) => {
          const d = new FixedTimeoutDetector({ intervalMs, misses });
          for (const at of beats) d.heartbeat(at);
          expect(d.isLost(now)).toBe(now >= d.deadline());
          if (beats.length > 0) expect(d.deadline()).toBe(Math.max(...beats) + intervalMs * misses);
        },
      ),
    );
  });

  it.each([
    [{ intervalMs: 0, misses: 3 }, /intervalMs must be an integer > 0, got 0/],
    [{ intervalMs: -5, misses: 3 }, /intervalMs must be an integer > 0/],
    [{ intervalMs: 1.5, misses: 3 }, /intervalMs must be an integer > 0, got 1.5/],
    [{ intervalMs: Number.NaN, misses: 3 }, /intervalMs must be an integer > 0, got NaN/],
    [{ intervalMs: 1000, misses: 0 }, /misses must be an integer > 0, got 0/],
    [{ intervalMs: 1000, misses: Infinity }, /misses must be an integer > 0, got Infinity/],
  ])('rejects bad options %o with a RangeError', (options, message) => {
    expect(() => new FixedTimeoutDetector(options)).toThrow(RangeError);
    expect(() => new FixedTimeoutDetector(options)).toThrow(message);
  });

  it('rejects a non-finite heartbeat time', () => {
    const d = new FixedTimeoutDetector(schedule);
    expect(() => d.heartbeat(Number.NaN)).toThrow(RangeError);
    expect(() => d.heartbeat(Infinity)).toThrow(/heartbeat time must be a finite number/);
  });
});
