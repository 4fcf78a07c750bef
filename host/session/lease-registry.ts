/**
 * Named keep-awake leases. Anything that needs the board awake (an open dashboard, a user
 * command in flight, a test) acquires a lease; while at least one is held the session sends a
 * non-zero lease with each PING so the firmware does not go to sleep. The registry only
 * counts: what "held" means on the wire is the session's business.
 */
import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../time/clock.ts';

/** One acquisition. Release it when done; a lease with a ttl also ends by itself. */
export interface Lease {
  readonly name: string;
  /** False once released or expired. */
  readonly active: boolean;
  /** Ends this acquisition. Idempotent: a second call (or a call after expiry) does nothing. */
  release(): void;
}

export interface AcquireOptions {
  /** End the lease by itself after this many ms (finite, > 0). Without it, it lasts until released. */
  ttlMs?: number;
}

export interface LeaseRegistryEvents {
  /** Emitted only when `held` flips: the first lease acquired, the last one ended. */
  change: [held: boolean];
  /** A lease ended by its ttl rather than by release(). */
  expire: [name: string];
}

/**
 * Leases are reference-counted per name: acquiring "dashboard" twice gives two independent
 * Lease handles, and "dashboard" stays held until both are released (or expire). So two
 * callers that happen to pick the same name cannot end each other's lease, and a retried
 * acquire without a release keeps the board awake (visible in names()) rather than silently
 * merging. Each handle releases exactly once.
 */
export class LeaseRegistry extends EventEmitter<LeaseRegistryEvents> {
  private readonly clock: Clock;
  private readonly counts = new Map<string, number>();
  private readonly timers = new Set<TimerHandle>();
  private total = 0;
  private closed = false;

  constructor(options: { clock: Clock }) {
    super();
    this.clock = options.clock;
  }

  /** True while at least one lease is active. */
  get held(): boolean {
    return this.total > 0;
  }

  /** Number of active leases over all names. */
  get size(): number {
    return this.total;
  }

  /** Active lease count for `name` (0 when not held). */
  count(name: string): number {
    return this.counts.get(name) ?? 0;
  }

  /** Held names with how many active leases each has, sorted by name (stable output for logs and status). */
  names(): Array<{ name: string; count: number }> {
    return [...this.counts]
      .map(([name, count]) => ({ name, count }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Takes a lease on `name` (adds one to its count). Emits 'change' (true) if nothing was held.
   * Throws a RangeError for an empty name or a bad ttl, and an Error after close().
   */
  acquire(name: string, options: AcquireOptions = {}): Lease {
    if (this.closed) throw new Error('LeaseRegistry is closed');
    if (typeof name !== 'string' || name.length === 0) {
      throw new RangeError('lease name must be a non-empty string');
    }
    const { ttlMs } = options;
    if (ttlMs !== undefined && (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0)) {
      throw new RangeError(`lease ttlMs must be a finite number > 0, got ${String(ttlMs)}`);
    }

    let active = true;
    let timer: TimerHandle | undefined;
    const end = (expired: boolean): void => {
      if (!active) return;
      active = false;
      if (timer !== undefined) {
        this.clock.clearTimeout(timer);
        this.timers.delete(timer);
      }
      // After close() the counts are gone; a late release must not touch them.
      if (this.closed) return;
      this.decrement(name);
      if (expired) this.emit('expire', name);
      if (this.total === 0) this.emit('change', false);
    };
    if (ttlMs !== undefined) {
      timer = this.clock.setTimeout(() => end(true), ttlMs);
      this.timers.add(timer);
    }

    this.counts.set(name, this.count(name) + 1);
    this.total++;
    if (this.total === 1) this.emit('change', true);

    return {
      name,
      get active() {
        return active;
      },
      release: () => end(false),
    };
  }

  /**
   * Clears every ttl timer and forgets all leases, without events (the owner is shutting
   * down). Handles released afterwards do nothing; acquire() throws.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) this.clock.clearTimeout(timer);
    this.timers.clear();
    this.counts.clear();
    this.total = 0;
  }

  private decrement(name: string): void {
    const left = this.count(name) - 1;
    if (left > 0) this.counts.set(name, left);
    else this.counts.delete(name);
    this.total--;
  }
}
