import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';

describe('ManualClock', () => {
  it('starts where told and moves only when advanced', () => {
    const clock = new ManualClock(1000);
    expect(clock.now()).toBe(1000);
    clock.advance(0);
    expect(clock.now()).toBe(1000);
    clock.advance(250);
    expect(clock.now()).toBe(1250);
  });

  it('wall-clock time moves with it, from the epoch given for its start', () => {
    const clock = new ManualClock(1000, Date.UTC(2026, 5, 1));
    expect(clock.wallNow()).toBe(Date.UTC(2026, 5, 1));
    clock.advance(1500);
    clock.block(500);
    expect(clock.wallNow()).toBe(Date.UTC(2026, 5, 1) + 2000);
  });

  it('runs timers in due order, same-time timers in the order they were set, each at its due time', () => {
    const clock = new ManualClock();
    const ran: Array<[string, number]> = [];
    const at = (name: string) => () => ran.push([name, clock.now()]);
    clock.setTimeout(at('c'), 30);
    clock.setTimeout(at('a1'), 10);
    clock.setTimeout(at('b'), 20);
    clock.setTimeout(at('a2'), 10);
    clock.setTimeout(at('late'), 101);
    clock.advance(100);
    expect(ran).toEqual([
      ['a1', 10],
      ['a2', 10],
      ['b', 20],
      ['c', 30],
    ]);
    expect(clock.now()).toBe(100);
    expect(clock.pending).toBe(1);
    clock.advance(1);
    expect(ran.at(-1)).toEqual(['late', 101]);
    expect(clock.pending).toBe(0);
  });

  it('a negative delay counts as 0: due now, run on the next advance', () => {
    const clock = new ManualClock(50);
    let ran = false;
    clock.setTimeout(() => (ran = true), -5);
    expect(ran).toBe(false);
    clock.advance(0);
    expect(ran).toBe(true);
  });

  it('runs timers set during an advance when they fall due before its end, relative to their due time', () => {
    const clock = new ManualClock();
    const ran: Array<[string, number]> = [];
    // A 10 ms interval built from timeouts, as production code does it.
    const tick = () => {
      ran.push(['tick', clock.now()]);
      clock.setTimeout(tick, 10);
    };
    clock.setTimeout(tick, 10);
    clock.setTimeout(() => {
      ran.push(['outer', clock.now()]);
      clock.setTimeout(() => ran.push(['inner-0', clock.now()]), 0);
      clock.setTimeout(() => ran.push(['inner-100', clock.now()]), 100);
    }, 15);
    clock.advance(35);
    expect(ran).toEqual([
      ['tick', 10],
      ['outer', 15],
      ['inner-0', 15],
      ['tick', 20],
      ['tick', 30],
    ]);
    expect(clock.pending).toBe(2); // the next tick (40) and inner-100 (115)
  });

  it('clearTimeout cancels a timer, also from inside another timer due at the same time; clearing twice is harmless', () => {
    const clock = new ManualClock();
    const ran: string[] = [];
    const b = clock.setTimeout(() => ran.push('b'), 20);
    clock.setTimeout(() => {
      ran.push('a');
      clock.clearTimeout(c);
    }, 10);
    const c = clock.setTimeout(() => ran.push('c'), 10);
    clock.clearTimeout(b);
    clock.clearTimeout(b);
    expect(clock.pending).toBe(2);
    clock.advance(100);
    expect(ran).toEqual(['a']);
    expect(clock.pending).toBe(0);
  });

  it('block() moves time without running timers; overdue timers run late, on the next advance', () => {
    const clock = new ManualClock();
    const ran: number[] = [];
    clock.setTimeout(() => ran.push(clock.now()), 100);
    clock.block(500);
    expect(clock.now()).toBe(500);
    expect(ran).toEqual([]);
    clock.advance(0);
    expect(ran).toEqual([500]); // late: it cannot run before the loop was free
    expect(clock.now()).toBe(500);
  });

  it('advance() runs callbacks back to back; advanceAsync() lets promise callbacks run between timers', async () => {
    // An async loop: each step awaits a timer, then a promise, then sets the next timer.
    const asyncLoop = (clock: ManualClock) => {
      const seen: string[] = [];
      const sleep = (ms: number) => new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
      void (async () => {
        for (let i = 0; i < 3; i++) {
          await sleep(10);
          await Promise.resolve();
          seen.push(`step ${i} at ${clock.now()}`);
        }
      })();
      return seen;
    };
    const sync = new ManualClock();
    const seenSync = asyncLoop(sync);
    sync.advance(100);
    // Only the first timer could run: the loop set the second one after advance() returned.
    expect([...seenSync]).toEqual([]);
    expect(sync.pending).toBe(0);

    const async = new ManualClock();
    const seenAsync = asyncLoop(async);
    await async.advanceAsync(100);
    expect(seenAsync).toEqual(['step 0 at 10', 'step 1 at 20', 'step 2 at 30']);
    expect(async.now()).toBe(100);
  });

  it('advanceAsync(0) lets pending promise callbacks run and runs timers already due, without moving time', async () => {
    const clock = new ManualClock(7);
    const seen: string[] = [];
    void Promise.resolve()
      .then(() => undefined)
      .then(() => clock.setTimeout(() => seen.push(`timer at ${clock.now()}`), 0));
    await clock.advanceAsync(0);
    expect(seen).toEqual(['timer at 7']);
    expect(clock.now()).toBe(7);
  });
});
