/**
 * A bound on how many outbox journals hold an open file descriptor at once, shared by every
 * board's DurableOutbox in a daemon. An outbox closes its journal when idle (idleCloseMs) and
 * opens it for the next record; without a bound, a burst in which every board writes at once
 * (start-up: every board's state, description and facts) holds one descriptor per board again
 * next to its two sockets, past the open-file limit at ~6,600 boards here (ulimit -n 20,000).
 *
 * A journal that wants a descriptor when all are in use takes one from a journal that is only
 * waiting out its idle time (it closes at once), else waits for the next release. Holders are
 * asked to hurry while others wait (their batched sync is done at once, their idle wait skipped).
 */
export class JournalFdPool {
  private inUse = 0;
  private readonly waiters: Array<() => void> = [];
  /** Holders that are only waiting out their idle time: each closes its journal when called. */
  private readonly idle = new Set<() => void>();

  constructor(readonly size = 64) {
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`size must be an integer >= 1, got ${size}`);
  }

  /** Descriptors held now. */
  get held(): number {
    return this.inUse;
  }

  /** Journals waiting for a descriptor. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Resolves once the caller may hold a descriptor (then release() it when closed). */
  acquire(): Promise<void> {
    if (this.inUse < this.size) {
      this.inUse++;
      return Promise.resolve();
    }
    const wait = new Promise<void>((resolve) => this.waiters.push(resolve));
    this.evictIdle();
    return wait;
  }

  /** A descriptor was closed: the next waiter gets it. */
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.inUse--;
  }

  /** `close` is called (once) if a waiter needs the descriptor before the holder's idle time is over. */
  markIdle(close: () => void): void {
    this.idle.add(close);
    if (this.waiters.length > 0) this.evictIdle();
  }

  unmarkIdle(close: () => void): void {
    this.idle.delete(close);
  }

  private evictIdle(): void {
    for (const close of this.idle) {
      this.idle.delete(close);
      close();
      return;
    }
  }
}
