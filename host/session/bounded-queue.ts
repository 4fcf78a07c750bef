/**
 * A bounded queue for writes meant for a sleeping device: they wait here until it wakes, then
 * go out in order. A board may sleep for minutes, so the queue must not grow without limit;
 * when it is full the oldest item is dropped, and every drop is reported (onDrop and the
 * `dropped` counter) so a lost command is never silent.
 */

/** Why an item left the queue other than through drain(): 'overflow': pushed out by a newer item while full; 'cleared': removed by clear(). */
export type QueueDropReason = 'overflow' | 'cleared';

export interface BoundedQueueOptions<T> {
  /** Most items held at once (integer > 0). */
  capacity: number;
  /** Told about every item that leaves the queue other than through drain(). */
  onDrop?: (item: T, reason: QueueDropReason) => void;
}

/**
 * FIFO with a capacity: pushing into a full queue drops the oldest item.
 *
 * Invariant: every pushed item is eventually drained, dropped (reported), or still queued:
 * pushed = drained + dropped + size.
 */
export class BoundedQueue<T> {
  readonly capacity: number;
  private readonly onDrop: ((item: T, reason: QueueDropReason) => void) | undefined;
  private items: T[] = [];
  private droppedCount = 0;

  constructor(options: BoundedQueueOptions<T>) {
    if (!Number.isInteger(options.capacity) || options.capacity <= 0) {
      throw new RangeError(`capacity must be an integer > 0, got ${String(options.capacity)}`);
    }
    this.capacity = options.capacity;
    this.onDrop = options.onDrop;
  }

  /** Items currently queued. */
  get size(): number {
    return this.items.length;
  }

  /** Items dropped (overflow or clear()) since construction. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Appends `item`. When the queue is full, the oldest item is dropped first and reported. */
  push(item: T): void {
    if (this.items.length >= this.capacity) {
      const victim = this.items.shift() as T;
      // Make room before reporting so an onDrop that inspects the queue sees it consistent.
      this.items.push(item);
      this.drop(victim, 'overflow');
      return;
    }
    this.items.push(item);
  }

  /** Removes and returns every item, oldest first. */
  drain(): T[] {
    const items = this.items;
    this.items = [];
    return items;
  }

  /** Oldest item without removing it, or undefined when empty. */
  peek(): T | undefined {
    return this.items[0];
  }

  /** Drops every queued item, reporting each with reason 'cleared'. Returns how many. */
  clear(): number {
    const items = this.drain();
    for (const item of items) this.drop(item, 'cleared');
    return items.length;
  }

  private drop(item: T, reason: QueueDropReason): void {
    this.droppedCount++;
    this.onDrop?.(item, reason);
  }
}
