import type { Clock, Rescheduling, TimerHandle } from './clock.ts';

/** Entry.index of a timer taken out of the heap for the pass running now. */
const IN_PASS = -2;

/**
 * A pass runs due timers for at most this long, then lets the event loop turn (read sockets,
 * run other timers) before the rest: at 10,000 boards a pass that started late held a thousand
 * PINGs, a turn of hundreds of milliseconds in which no PONG was read (issue 15).
 */
const PASS_BUDGET_MS = 5;
/** The clock is read once per this many timers (reading it costs more than a PING's bookkeeping). */
const BUDGET_CHECK_EVERY = 16;

interface Entry {
  /** The SharedTimers that made it: reschedule() reuses only its own entries. */
  owner: SharedTimers;
  at: number;
  seq: number;
  fn: (() => void) | null;
  /** Index in the heap; -1 once it ran or was cleared; IN_PASS while due in the running pass. */
  index: number;
  /** Left over by a pass that ran out of its budget: the next pass runs it whatever its budget. */
  carried: boolean;
}

/**
 * One scheduler for many timers: a Clock whose timers live in a binary heap (earliest due
 * first, equal times in the order they were set) behind a single timer of the underlying
 * clock, set for the earliest one. A fleet of boards has a PING timer and a lost-deadline timer
 * each, the deadline re-armed on every PONG: here that is a heap push and a removal instead of
 * a timer object of the runtime each time, and the runtime holds one timer for all of them.
 *
 * Same contract as the Clock it wraps: a timer runs once, at or after its time; clearTimeout of
 * a timer that ran (or an unknown handle) does nothing. A timer set while due timers run waits
 * for the next pass (the underlying clock's next timer), so a callback that sets itself again
 * at 0 ms cannot hold the event loop. A pass that has run for PASS_BUDGET_MS leaves the
 * timers still due for the next pass, after the event loop turned (their order kept), which runs
 * them whatever its budget: a timer is put off by one turn at most. With
 * no timer pending, nothing is held on the underlying clock (a process with nothing else to do
 * may exit).
 */
export class SharedTimers implements Clock, Rescheduling {
  private readonly heap: Entry[] = [];
  private seq = 0;
  private armedAt = Infinity;
  private armed: TimerHandle | undefined;
  private running = false;
  /** The timers due in the pass running now (reused from pass to pass: no array per pass). */
  private readonly due: Array<Entry | null> = [];

  constructor(private readonly base: Clock) {}

  now(): number {
    return this.base.now();
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.heap.length;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const entry: Entry = { owner: this, at: 0, seq: 0, fn: null, index: -1, carried: false };
    this.schedule(entry, callback, ms);
    return entry as unknown as TimerHandle;
  }

  /**
   * clearTimeout(handle), then setTimeout(callback, ms), in the same entry when `handle` is one
   * of this scheduler's that is not due in the pass running now: a board's PING tick and lost
   * deadline, re-set every interval, keep one entry each instead of one object per PING (each
   * lived a second or more: long enough to be copied by the young-generation GC, or promoted).
   * The handle returned may be `handle` itself: the caller must keep no other copy of it.
   */
  reschedule(handle: TimerHandle | undefined, callback: () => void, ms: number): TimerHandle {
    const entry = handle as unknown as Entry | undefined;
    if (typeof entry !== 'object' || entry === null || entry.owner !== this || entry.index === IN_PASS) {
      if (handle !== undefined) this.clearTimeout(handle);
      return this.setTimeout(callback, ms);
    }
    if (entry.index >= 0 && this.heap[entry.index] === entry) this.removeAt(entry.index);
    entry.carried = false;
    this.schedule(entry, callback, ms);
    return handle!;
  }

  private schedule(entry: Entry, callback: () => void, ms: number): void {
    entry.at = this.base.now() + Math.max(0, ms);
    entry.seq = ++this.seq;
    entry.fn = callback;
    entry.index = this.heap.length;
    this.heap.push(entry);
    this.up(entry.index);
    this.arm();
  }

  clearTimeout(handle: TimerHandle): void {
    const entry = handle as unknown as Entry;
    if (typeof entry !== 'object' || entry === null) return;
    if (entry.index === IN_PASS) {
      entry.fn = null; // due in the pass running now: it will be skipped
      return;
    }
    if (entry.index < 0 || this.heap[entry.index] !== entry) return;
    this.removeAt(entry.index);
    entry.fn = null;
    this.arm();
  }

  private fire = (): void => {
    this.armed = undefined;
    this.armedAt = Infinity;
    this.running = true;
    // Everything due now, taken out first: timers set by these callbacks wait for the next pass.
    const now = this.base.now();
    const due = this.due;
    let count = 0;
    while (this.heap.length > 0 && this.heap[0]!.at <= now) {
      const entry = this.heap[0]!;
      this.removeAt(0);
      entry.index = IN_PASS;
      if (count < due.length) due[count] = entry;
      else due.push(entry);
      count++;
    }
    let i = 0;
    try {
      for (; i < count; i++) {
        const entry = due[i]!;
        // Only timers not put off once already: none waits more than one extra turn (the
        // sockets' work between passes is not bounded, so a budget alone could starve timers).
        if (!entry.carried && i > 0 && i % BUDGET_CHECK_EVERY === 0 && this.base.now() - now >= PASS_BUDGET_MS) break;
        due[i] = null; // not kept alive by the reused list
        const fn = entry.fn;
        entry.fn = null;
        entry.index = -1;
        if (fn === null) continue; // cleared by an earlier callback of this pass
        try {
          fn();
        } catch (err) {
          // One timer's failure must not stop the others; it surfaces as an uncaught error would.
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    } finally {
      // Over budget: the rest go back with their times and order (due at once, after a turn).
      for (let k = i; k < count; k++) {
        const entry = due[k]!;
        due[k] = null;
        if (entry.fn === null) {
          entry.index = -1;
          continue;
        }
        entry.carried = true;
        entry.index = this.heap.length;
        this.heap.push(entry);
        this.up(entry.index);
      }
      this.running = false;
      this.arm();
    }
  };

  /** Keeps the one underlying timer set for the earliest entry (none when empty). */
  private arm(): void {
    if (this.running) return; // fire() arms once the pass is over
    const first = this.heap[0];
    const at = first === undefined ? Infinity : first.at;
    if (at === this.armedAt) return;
    if (this.armed !== undefined) this.base.clearTimeout(this.armed);
    this.armed = undefined;
    this.armedAt = at;
    if (first !== undefined) this.armed = this.base.setTimeout(this.fire, Math.max(0, at - this.base.now()));
  }

  private removeAt(i: number): void {
    const heap = this.heap;
    const removed = heap[i]!;
    const last = heap.pop()!;
    removed.index = -1;
    if (last === removed) return;
    heap[i] = last;
    last.index = i;
    this.up(i);
    this.down(last.index);
  }

  private less(a: Entry, b: Entry): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private up(i: number): void {
    const heap = this.heap;
    const entry = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (!this.less(entry, parent)) break;
      heap[i] = parent;
      parent.index = i;
      i = p;
    }
    heap[i] = entry;
    entry.index = i;
  }

  private down(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const entry = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(heap[r]!, heap[l]!) ? r : l;
      const child = heap[c]!;
      if (!this.less(child, entry)) break;
      heap[i] = child;
      child.index = i;
      i = c;
    }
    heap[i] = entry;
    entry.index = i;
  }
}
