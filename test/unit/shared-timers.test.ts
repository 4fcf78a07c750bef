import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { SharedTimers } from '../../host/time/shared-timers.ts';
import { rearm, type TimerHandle } from '../../host/time/clock.ts';

describe('SharedTimers (one scheduler for many timers)', () => {
  it('runs timers in due order, same-time ones in the order they were set, each at its due time', () => {
    const base = new ManualClock();
    const timers = new SharedTimers(base);
    const ran: Array<[string, number]> = [];
    const at = (name: string) => () => ran.push([name, timers.now()]);
    timers.setTimeout(at('c'), 30);
    timers.setTimeout(at('a1'), 10);
    timers.setTimeout(at('b'), 20);
    timers.setTimeout(at('a2'), 10);
    timers.setTimeout(at('late'), 101);
    base.advance(100);
    expect(ran).toEqual([
      ['a1', 10],
      ['a2', 10],
      ['b', 20],
      ['c', 30],
    ]);
    base.advance(1);
    expect(ran.at(-1)).toEqual(['late', 101]);
  });

  it('holds one timer of the underlying clock whatever the number of its own', () => {
    const base = new ManualClock();
    const timers = new SharedTimers(base);
    const handles = Array.from({ length: 1000 }, (_, i) => timers.setTimeout(() => {}, 1000 + i));
    expect(timers.pending).toBe(1000);
    expect(base.pending).toBe(1);
    for (const h of handles) timers.clearTimeout(h);
    expect(timers.pending).toBe(0);
    expect(base.pending).toBe(0); // nothing left to keep a process alive
  });

  it('a cleared timer never runs, wherever it sits in the heap; clearing twice or after it ran does nothing', () => {
    const base = new ManualClock();
    const timers = new SharedTimers(base);
    const ran: number[] = [];
    const handles = [50, 10, 40, 20, 30, 60, 5].map((ms) => [ms, timers.setTimeout(() => ran.push(ms), ms)] as const);
    const byMs = new Map(handles);
    timers.clearTimeout(byMs.get(20)!);
    timers.clearTimeout(byMs.get(5)!); // the earliest: the underlying timer moves to the next
    timers.clearTimeout(byMs.get(5)!);
    base.advance(45);
    timers.clearTimeout(byMs.get(10)!); // already ran
    base.advance(100);
    expect(ran).toEqual([10, 30, 40, 50, 60]);
  });

  it('re-arming a deadline on every heartbeat (clear + set) keeps one pending timer, firing only when silent', () => {
    const base = new ManualClock();
    const timers = new SharedTimers(base);
    let lost = 0;
    let deadline = timers.setTimeout(() => lost++, 3000);
    for (let i = 0; i < 100; i++) {
      base.advance(1000);
      timers.clearTimeout(deadline);
      deadline = timers.setTimeout(() => lost++, 3000);
    }
    expect(lost).toBe(0);
    expect(timers.pending).toBe(1);
    base.advance(2999);
    expect(lost).toBe(0);
    base.advance(1);
    expect(lost).toBe(1);
    expect(base.pending).toBe(0);
  });

  it('a timer cleared by an earlier callback due at the same time does not run', () => {
    const base = new ManualClock();
    const timers = new SharedTimers(base);
    const ran: string[] = [];
    let second: ReturnType<SharedTimers['setTimeout']> | undefined;
    timers.setTimeout(() => {
      ran.push('first');
      timers.clearTimeout(second!);
    }, 10);
    second = timers.setTimeout(() => ran.push('second'), 10);
    base.advance(10);
    expect(ran).toEqual(['first']);
  });

  it('a timer set by a callback runs in a later pass, still within the same advance when due', () => {
    const base = new ManualClock();
    const timers = new SharedTimers(base);
    const ran: Array<[string, number]> = [];
    timers.setTimeout(() => {
      ran.push(['outer', timers.now()]);
      timers.setTimeout(() => ran.push(['inner at 0 ms', timers.now()]), 0);
      timers.setTimeout(() => ran.push(['inner at 5 ms', timers.now()]), 5);
    }, 10);
    timers.setTimeout(() => ran.push(['same time, set before', timers.now()]), 10);
    base.advance(20);
    expect(ran).toEqual([
      ['outer', 10],
      ['same time, set before', 10],
      ['inner at 0 ms', 10],
      ['inner at 5 ms', 15],
    ]);
  });

  it('a callback that sets itself again at 0 ms runs once per pass (one underlying timer each), not in a loop', () => {
    const base = new ManualClock();
    let underlying = 0;
    const counting = { now: () => base.now(), clearTimeout: base.clearTimeout.bind(base), setTimeout: (fn: () => void, ms: number) => (underlying++, base.setTimeout(fn, ms)) };
    const timers = new SharedTimers(counting);
    const passes: number[] = [];
    const again = () => {
      passes.push(underlying);
      if (passes.length < 5) timers.setTimeout(again, 0);
    };
    timers.setTimeout(again, 0);
    base.advance(0);
    // Each run came from a pass of its own: the underlying clock was asked once more before each.
    expect(passes).toEqual([1, 2, 3, 4, 5]);
  });

  it('a callback that throws does not stop the others due with it', async () => {
    const base = new ManualClock();
    const timers = new SharedTimers(base);
    const ran: string[] = [];
    const errors: unknown[] = [];
    const onError = (err: unknown) => errors.push(err);
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onError);
    try {
      timers.setTimeout(() => {
        throw new Error('boom');
      }, 10);
      timers.setTimeout(() => ran.push('after'), 10);
      base.advance(10);
      expect(ran).toEqual(['after']);
      await new Promise((r) => setImmediate(r));
      expect(errors).toHaveLength(1);
      expect((errors[0] as Error).message).toBe('boom');
    } finally {
      process.off('uncaughtException', onError);
      for (const l of listeners) process.on('uncaughtException', l);
    }
  });
  it('a pass that has run its time budget lets the event loop turn before the timers still due, in their order, put off once at most', () => {
    const base = new ManualClock();
    const timers = new SharedTimers(base);
    const ran: number[] = [];
    // 100 timers due at once, each taking 1 ms of the event loop (ManualClock.block).
    for (let i = 0; i < 100; i++) {
      timers.setTimeout(() => {
        ran.push(i);
        base.block(1);
      }, 10);
    }
    const passes: number[] = [];
    let last = 0;
    const countPass = () => {
      passes.push(ran.length - last);
      last = ran.length;
    };
    base.advance(10);
    countPass();
    // The first pass stopped after its budget (checked every 16 timers); the rest wait for a timer of the underlying clock.
    expect(passes[0]).toBeGreaterThan(0);
    expect(passes[0]).toBeLessThan(100);
    expect(base.pending).toBe(1);
    // The next pass runs those it put off whatever its budget: a timer waits one extra turn at most.
    base.advance(0);
    countPass();
    expect(passes).toEqual([passes[0], 100 - passes[0]!]);
    expect(ran).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(timers.pending).toBe(0);
    expect(base.pending).toBe(0);
  });

  it('a timer cleared while it waits for the next pass never runs', () => {
    const base = new ManualClock();
    const timers = new SharedTimers(base);
    const ran: number[] = [];
    const handles: ReturnType<SharedTimers['setTimeout']>[] = [];
    for (let i = 0; i < 40; i++) {
      handles.push(
        timers.setTimeout(() => {
          ran.push(i);
          base.block(1);
        }, 10),
      );
    }
    base.advance(10);
    const first = ran.length;
    expect(first).toBeLessThan(40);
    timers.clearTimeout(handles[39]!);
    while (base.pending > 0) base.advance(0);
    expect(ran).toEqual(Array.from({ length: 39 }, (_, i) => i));
  });

  describe('reschedule (a timer set again by its one owner, in the same entry)', () => {
    it('reuses the entry of a timer that ran: the same handle, due again at the new time, in order with the others', () => {
      const base = new ManualClock();
      const timers = new SharedTimers(base);
      const ran: Array<[string, number]> = [];
      let handle: TimerHandle | undefined;
      const tick = () => {
        ran.push(['tick', timers.now()]);
        const again = timers.reschedule(handle, tick, 100);
        expect(again).toBe(handle); // it ran: its entry is taken again
        handle = again;
      };
      handle = timers.setTimeout(tick, 100);
      timers.setTimeout(() => ran.push(['other', timers.now()]), 200); // set before the tick's second round
      base.advance(300);
      expect(ran).toEqual([
        ['tick', 100],
        ['other', 200], // set earlier than the tick's re-set for 200: runs first, as with a fresh timer
        ['tick', 200],
        ['tick', 300],
      ]);
      expect(timers.pending).toBe(1);
      expect(base.pending).toBe(1);
    });

    it('moves a pending timer: it runs once, at its new time only', () => {
      const base = new ManualClock();
      const timers = new SharedTimers(base);
      const ran: number[] = [];
      const h = timers.setTimeout(() => ran.push(timers.now()), 50);
      for (let i = 0; i < 20; i++) timers.setTimeout(() => {}, 10 + i * 7); // a heap to move it through
      expect(timers.reschedule(h, () => ran.push(timers.now()), 120)).toBe(h);
      base.advance(200);
      expect(ran).toEqual([120]);
      expect(timers.pending).toBe(0);
    });

    it('a cleared handle is reused; clearing the returned handle cancels the new timer', () => {
      const base = new ManualClock();
      const timers = new SharedTimers(base);
      const ran: string[] = [];
      const h = timers.setTimeout(() => ran.push('old'), 10);
      timers.clearTimeout(h);
      const again = timers.reschedule(h, () => ran.push('new'), 20);
      base.advance(30);
      expect(ran).toEqual(['new']);
      const third = timers.reschedule(again, () => ran.push('third'), 10);
      timers.clearTimeout(third);
      base.advance(100);
      expect(ran).toEqual(['new']);
      expect(base.pending).toBe(0);
    });

    it('a timer due in the running pass and not yet run is not reused: it is cancelled and a new one made', () => {
      const base = new ManualClock();
      const timers = new SharedTimers(base);
      const ran: Array<[string, number]> = [];
      let victim: TimerHandle | undefined;
      timers.setTimeout(() => {
        const moved = timers.reschedule(victim, () => ran.push(['moved', timers.now()]), 5);
        expect(moved).not.toBe(victim); // the pass still holds the old entry
        ran.push(['first', timers.now()]);
      }, 10);
      victim = timers.setTimeout(() => ran.push(['victim', timers.now()]), 10);
      base.advance(10);
      expect(ran).toEqual([['first', 10]]); // the old one is skipped in its pass
      base.advance(10);
      expect(ran).toEqual([
        ['first', 10],
        ['moved', 15],
      ]);
      expect(timers.pending).toBe(0);
    });

    it("another clock's handle, or none, is a plain setTimeout (after clearing it on this clock: nothing)", () => {
      const base = new ManualClock();
      const timers = new SharedTimers(base);
      const other = new SharedTimers(new ManualClock());
      const foreign = other.setTimeout(() => {}, 10);
      const ran: string[] = [];
      const a = timers.reschedule(foreign, () => ran.push('a'), 10);
      const b = timers.reschedule(undefined, () => ran.push('b'), 10);
      expect(a).not.toBe(foreign);
      expect(b).not.toBe(a);
      expect(other.pending).toBe(1); // not this clock's: left alone
      base.advance(10);
      expect(ran).toEqual(['a', 'b']);
    });

    it('rearm() uses reschedule where the clock has it, and clear-then-set where it has not', () => {
      const manual = new ManualClock();
      const ran: string[] = [];
      const first = manual.setTimeout(() => ran.push('first'), 10);
      const second = rearm(manual, first, () => ran.push('second'), 20);
      expect(second).not.toBe(first);
      manual.advance(30);
      expect(ran).toEqual(['second']); // the first was cleared
      const timers = new SharedTimers(new ManualClock());
      const h = timers.setTimeout(() => {}, 10);
      expect(rearm(timers, h, () => {}, 10)).toBe(h);
      expect(timers.pending).toBe(1);
    });
  });
});
