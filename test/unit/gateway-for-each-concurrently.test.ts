import { describe, expect, it } from 'vitest';
import { forEachConcurrently } from '../../host/gateway/for-each-concurrently.ts';

/** A task per item that the test settles by hand. */
function controlled() {
  const waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  const started: number[] = [];
  const fn = (i: number) =>
    new Promise<void>((resolve, reject) => {
      started.push(i);
      waiting.set(i, { resolve, reject });
    });
  const tick = async () => {
    for (let k = 0; k < 5; k++) await Promise.resolve();
  };
  return { waiting, started, fn, tick };
}

describe('forEachConcurrently (the gateway opening its boards\' outboxes several at a time)', () => {
  it('runs at most `limit` at once, in order, starting the next as one finishes', async () => {
    const { waiting, started, fn, tick } = controlled();
    const done = forEachConcurrently([0, 1, 2, 3, 4], 2, fn);
    await tick();
    expect(started).toEqual([0, 1]);
    waiting.get(1)!.resolve();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    waiting.get(0)!.resolve();
    waiting.get(2)!.resolve();
    await tick();
    expect(started).toEqual([0, 1, 2, 3, 4]);
    waiting.get(3)!.resolve();
    waiting.get(4)!.resolve();
    expect(await done).toBeNull();
  });

  it('after a failure starts nothing more, waits for those running, and resolves with the failure', async () => {
    const { waiting, started, fn, tick } = controlled();
    let settled = false;
    const done = forEachConcurrently([0, 1, 2, 3], 2, fn).then((r) => {
      settled = true;
      return r;
    });
    await tick();
    const boom = new Error('disk full');
    waiting.get(0)!.reject(boom);
    await tick();
    expect(started).toEqual([0, 1]);
    expect(settled).toBe(false); // item 1 still running
    waiting.get(1)!.resolve();
    expect(await done).toEqual({ err: boom });
    expect(started).toEqual([0, 1]);
  });

  it('does nothing for no items, and rejects a limit that is not an integer >= 1', async () => {
    expect(await forEachConcurrently([], 4, async () => {})).toBeNull();
    await expect(forEachConcurrently([1], 0, async () => {})).rejects.toThrow(RangeError);
  });
});
