/**
 * A bounded queue for writes meant for a sleeping device: they wait here until it wakes, then
 * go out in order. A board may sleep for minutes, so the queue must not grow without limit;
 * when it is full something is dropped, and every drop is reported (onDrop and the `dropped`
 * counter) so a lost command is never silent.
 */

/** 'telemetry' items (polls, reports that will be superseded) are dropped before 'command' items. */
export type Priority = 'command' | 'telemetry';

/** 'overflow': pushed out by a newer item while full. 'cleared': removed by clear(). */
export type DropReason = 'overflow' | 'cleared';

export interface BoundedQueueOptions<T> {
  /** Most items held at once (integer > 0). */
  capacity: number;
  /** Told about every item that leaves the queue other than through drain(). */
  onDrop?: (item: T, reason: DropReason) => void;
  /** Priority of an item pushed without one. Default: every item is a 'command'. */
  classify?: (item: T) => Priority;
}

interface Entry<T> {
  item: T;
  priority: Priority;
}

/**
 * FIFO with a capacity. When full, the victim is chosen among the queued items and the new
 * one together: the oldest telemetry item if there is any, else the oldest command. So
 * without telemetry it drops the oldest item, and a telemetry item pushed into a queue full
 * of commands is itself dropped rather than displacing a command.
 *
 * Invariant: every pushed item is eventually drained, dropped (reported), or still queued:
 * pushed = drained + dropped + size.
 */
export class BoundedQueue<T> {
  readonly capacity: number;
  private readonly onDrop: ((item: T, reason: DropReason) => void) | undefined;
  private readonly classify: ((item: T) => Priority) | undefined;
  private entries: Entry<T>[] = [];
  private telemetryCount = 0;
  private droppedCount = 0;

  constructor(options: BoundedQueueOptions<T>) {
    if (!Number.isInteger(options.capacity) || options.capacity <= 0) {
      throw new RangeError(`capacity must be an integer > 0, got ${String(options.capacity)}`);
    }
    this.capacity = options.capacity;
    this.onDrop = options.onDrop;
    this.classify = options.classify;
  }

  /** Items currently queued. */
  get size(): number {
    return this.entries.length;
  }

  /** Items dropped (overflow or clear()) since construction. */
  get dropped(): number {
    return this.droppedCount;
  }

  /**
   * Appends `item` (priority: the argument, else `classify(item)`, else 'command'). When the
   * queue is full, one item is dropped first (see the class comment) and reported.
   */
  push(item: T, priority: Priority = this.classify?.(item) ?? 'command'): void {
    if (this.entries.length >= this.capacity) {
      if (this.telemetryCount === 0 && priority === 'telemetry') {
        this.drop(item, 'overflow');
        return;
      }
      const index = this.telemetryCount > 0 ? this.entries.findIndex((e) => e.priority === 'telemetry') : 0;
      const [victim] = this.entries.splice(index, 1);
      if (victim.priority === 'telemetry') this.telemetryCount--;
      // Make room before reporting so an onDrop that inspects the queue sees it consistent.
      this.entries.push({ item, priority });
      if (priority === 'telemetry') this.telemetryCount++;
      this.drop(victim.item, 'overflow');
      return;
    }
    this.entries.push({ item, priority });
    if (priority === 'telemetry') this.telemetryCount++;
  }

  /** Removes and returns every item, oldest first. */
  drain(): T[] {
    const items = this.entries.map((e) => e.item);
    this.entries = [];
    this.telemetryCount = 0;
    return items;
  }

  /** Oldest item without removing it, or undefined when empty. */
  peek(): T | undefined {
    return this.entries[0]?.item;
  }

  /** Drops every queued item, reporting each with reason 'cleared'. Returns how many. */
  clear(): number {
    const items = this.drain();
    for (const item of items) this.drop(item, 'cleared');
    return items.length;
  }

  private drop(item: T, reason: DropReason): void {
    this.droppedCount++;
    this.onDrop?.(item, reason);
  }
}
