import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BoundedQueue, type QueueDropReason } from '../../host/session/bounded-queue.ts';

function queue<T>(capacity: number) {
  const drops: Array<[T, QueueDropReason]> = [];
  const q = new BoundedQueue<T>({ capacity, onDrop: (item, reason) => drops.push([item, reason]) });
  return { q, drops };
}

describe('BoundedQueue', () => {
  it('drains everything in push order and empties', () => {
    const { q, drops } = queue<number>(5);
    for (const n of [1, 2, 3]) q.push(n);
    expect(q.size).toBe(3);
    expect(q.peek()).toBe(1);
    expect(q.drain()).toEqual([1, 2, 3]);
    expect(q.size).toBe(0);
    expect(q.drain()).toEqual([]);
    expect(q.peek()).toBeUndefined();
    expect(drops).toEqual([]);
    expect(q.dropped).toBe(0);
  });

  it('when full drops the oldest, reporting it through onDrop and the counter', () => {
    const { q, drops } = queue<string>(3);
    for (const s of ['a', 'b', 'c', 'd', 'e']) q.push(s);
    expect(q.size).toBe(3);
    expect(drops).toEqual([
      ['a', 'overflow'],
      ['b', 'overflow'],
    ]);
    expect(q.dropped).toBe(2);
    expect(q.drain()).toEqual(['c', 'd', 'e']);
  });

  it('counts drops even without an onDrop callback', () => {
    const q = new BoundedQueue<number>({ capacity: 1 });
    q.push(1);
    q.push(2);
    expect(q.dropped).toBe(1);
    expect(q.drain()).toEqual([2]);
  });

  it('clear() drops everything, reported as cleared', () => {
    const { q, drops } = queue<number>(4);
    q.push(1);
    q.push(2);
    expect(q.clear()).toBe(2);
    expect(q.size).toBe(0);
    expect(drops).toEqual([
      [1, 'cleared'],
      [2, 'cleared'],
    ]);
    expect(q.dropped).toBe(2);
  });

  it('onDrop sees the queue already consistent', () => {
    const seen: number[] = [];
    const q: BoundedQueue<number> = new BoundedQueue<number>({ capacity: 2, onDrop: () => seen.push(q.size) });
    q.push(1);
    q.push(2);
    q.push(3);
    expect(seen).toEqual([2]);
  });

  it.each([[0], [-1], [1.5], [Number.NaN]])('rejects capacity %o', (capacity) => {
    expect(() => new BoundedQueue({ capacity })).toThrow(RangeError);
    expect(() => new BoundedQueue({ capacity })).toThrow(/capacity must be an integer > 0/);
  });

  it('never exceeds capacity, loses nothing silently, and matches a reference model (property)', () => {
    type Op = { kind: 'push' } | { kind: 'drain' } | { kind: 'clear' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 8, arbitrary: fc.constant({ kind: 'push' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'drain' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 80 }), (capacity, ops) => {
        const { q, drops } = queue<number>(capacity);
        let model: number[] = [];
        let pushed = 0;
        let drained = 0;
        for (const o of ops) {
          if (o.kind === 'push') {
            const id = pushed++;
            q.push(id);
            model.push(id);
            if (model.length > capacity) model.shift(); // the model's rule: the oldest goes
          } else if (o.kind === 'drain') {
            const out = q.drain();
            expect(out).toEqual(model);
            drained += out.length;
            model = [];
          } else {
            q.clear();
            model = [];
          }
          expect(q.size).toBeLessThanOrEqual(capacity);
          expect(q.size).toBe(model.length);
          expect(pushed).toBe(drained + q.dropped + q.size);
          expect(drops.length).toBe(q.dropped);
        }
      }),
    );
  });
});
