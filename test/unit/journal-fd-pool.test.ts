import { describe, expect, it } from 'vitest';
import { JournalFdPool } from '../../host/mqtt/journal-fd-pool.ts';

describe('JournalFdPool', () => {
  it('grants up to size at once, then hands each release to the oldest waiter', async () => {
    const pool = new JournalFdPool(2);
    await pool.acquire();
    await pool.acquire();
    const order: string[] = [];
    const a = pool.acquire().then(() => order.push('a'));
    const b = pool.acquire().then(() => order.push('b'));
    expect(pool.waiting).toBe(2);
    pool.release();
    await a;
    expect(order).toEqual(['a']);
    expect(pool.held).toBe(2);
    pool.release();
    await b;
    expect(order).toEqual(['a', 'b']);
    pool.release();
    pool.release();
    expect(pool.held).toBe(0);
  });

  it('a waiter takes the descriptor of a holder only waiting out its idle time', async () => {
    const pool = new JournalFdPool(1);
    await pool.acquire();
    let closed = 0;
    const idleHolder = () => {
      closed++;
      pool.release(); // what DurableOutbox does when it closes its journal
    };
    pool.markIdle(idleHolder);
    await pool.acquire(); // resolves: the idle holder closed
    expect(closed).toBe(1);
    expect(pool.held).toBe(1);
    // A holder that became busy again (unmarked) is not asked.
    pool.markIdle(idleHolder);
    pool.unmarkIdle(idleHolder);
    const waiting = pool.acquire();
    expect(pool.waiting).toBe(1);
    expect(closed).toBe(1);
    pool.markIdle(idleHolder); // idle again while someone waits: asked at once
    await waiting;
    expect(closed).toBe(2);
  });

  it('refuses a size below 1', () => {
    expect(() => new JournalFdPool(0)).toThrow(/size/);
  });
});
