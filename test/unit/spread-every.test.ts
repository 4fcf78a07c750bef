import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { spreadEvery } from '../../host/time/spread-every.ts';

/** Runs spreadEvery over `n` numbered items and records (item, time) of every visit. */
function visits(clock: ManualClock, n: number, periodMs: number, minSliceMs?: number) {
  const items = Array.from({ length: n }, (_, i) => i);
  const seen: Array<[number, number]> = [];
  const stop = spreadEvery(clock, periodMs, () => items, (i) => seen.push([i, clock.now()]), { minSliceMs });
  return { seen, stop };
}

describe('spreadEvery (a periodic pass over many items, spread over the period)', () => {
  it('visits every item once per period, and all of them by the end of the first period', () => {
    const clock = new ManualClock();
    const { seen } = visits(clock, 1000, 5000);
    clock.advance(4999);
    expect(seen.length).toBeLessThan(1000);
    clock.advance(1);
    expect(seen.map(([i]) => i).sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    clock.advance(5000 * 3);
    const perItem = new Map<number, number>();
    for (const [i] of seen) perItem.set(i, (perItem.get(i) ?? 0) + 1);
    expect(new Set(perItem.values())).toEqual(new Set([4]));
  });

  it('cuts the period into slices of about n / slices items each, never all in one turn', () => {
    const clock = new ManualClock();
    const { seen } = visits(clock, 1000, 5000, 100);
    clock.advance(5000);
    const perTurn = new Map<number, number>();
    for (const [, at] of seen) perTurn.set(at, (perTurn.get(at) ?? 0) + 1);
    expect(perTurn.size).toBe(50); // 5000 / 100
    expect(Math.max(...perTurn.values())).toBe(20);
    expect([...perTurn.keys()].every((at) => at % 100 === 0)).toBe(true);
  });

  it('keeps each item at its own phase: the gap between two visits of an item is the period', () => {
    const clock = new ManualClock();
    const { seen } = visits(clock, 7, 1000, 10);
    clock.advance(3000);
    for (let i = 0; i < 7; i++) {
      const times = seen.filter(([item]) => item === i).map(([, at]) => at);
      expect(times).toHaveLength(3);
      expect(times[1]! - times[0]!).toBeCloseTo(1000, 6);
      expect(times[2]! - times[1]!).toBeCloseTo(1000, 6);
    }
  });

  it('one item alone is visited exactly every period (as every() would)', () => {
    const clock = new ManualClock();
    const { seen } = visits(clock, 1, 5000);
    clock.advance(15_000);
    expect(seen).toEqual([
      [0, 5000],
      [0, 10_000],
      [0, 15_000],
    ]);
  });

  it('reads the items once per period: a change applies from the next period', () => {
    const clock = new ManualClock();
    let items = [1, 2];
    const seen: number[] = [];
    spreadEvery(clock, 1000, () => items, (i) => seen.push(i));
    clock.advance(500);
    items = [3];
    clock.advance(500);
    expect(seen).toEqual([1, 2]);
    clock.advance(1000);
    expect(seen).toEqual([1, 2, 3]);
  });

  it('a loop blocked past a whole period finishes that period once, then starts the next from then', () => {
    const clock = new ManualClock();
    const { seen } = visits(clock, 2, 1000, 100);
    clock.advance(1000);
    expect(seen).toHaveLength(2);
    clock.block(5000); // the event loop is busy: the period's slices fire late
    clock.advance(0);
    expect(seen.slice(2)).toEqual([
      [0, 6000],
      [1, 6000],
    ]); // each item once, not once per missed period
    clock.advance(1000);
    expect(seen.slice(4)).toEqual([
      [0, 6500],
      [1, 7000],
    ]);
  });

  it('an item that throws does not stop the others; the error goes to onError', () => {
    const clock = new ManualClock();
    const seen: number[] = [];
    const errors: number[] = [];
    spreadEvery(
      clock,
      1000,
      () => [1, 2, 3],
      (i) => {
        if (i === 2) throw new Error('boom');
        seen.push(i);
      },
      { minSliceMs: 1000, onError: (_err, i) => errors.push(i) },
    );
    clock.advance(1000);
    expect(seen).toEqual([1, 3]);
    expect(errors).toEqual([2]);
    clock.advance(1000);
    expect(seen).toEqual([1, 3, 1, 3]);
  });

  it('stop() leaves no timer behind and visits nothing more, also from inside a visit', () => {
    const clock = new ManualClock();
    const { seen, stop } = visits(clock, 10, 1000);
    clock.advance(500);
    stop();
    expect(clock.pending).toBe(0);
    const before = seen.length;
    clock.advance(5000);
    expect(seen).toHaveLength(before);

    let stopInside: () => void = () => {};
    const inside: number[] = [];
    stopInside = spreadEvery(clock, 1000, () => [1, 2, 3], (i) => {
      inside.push(i);
      stopInside();
    }, { minSliceMs: 1000 });
    clock.advance(5000);
    expect(inside).toEqual([1]);
    expect(clock.pending).toBe(0);
  });

  it('rejects a period or slice that is not a number > 0', () => {
    const clock = new ManualClock();
    expect(() => spreadEvery(clock, 0, () => [], () => {})).toThrow(RangeError);
    expect(() => spreadEvery(clock, 1000, () => [], () => {}, { minSliceMs: Number.NaN })).toThrow(RangeError);
  });
});
