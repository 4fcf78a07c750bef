/**
 * Deciding when a board is lost. The session feeds every PONG (or any other frame from the
 * device: any frame proves the firmware is running) into a FailureDetector and asks it
 * whether the board is lost. Two implementations: the fixed timeout below and the adaptive
 * phi accrual detector in ./phi-accrual-detector.ts. Both are pure: time comes in as
 * explicit millisecond timestamps on the same monotonic scale as Clock.now().
 */

export interface FailureDetector {
  /** A heartbeat (PONG or any frame from the device) arrived at time `at` (ms). */
  heartbeat(at: number): void;
  /** True when the device should be considered lost at time `now`. */
  isLost(now: number): boolean;
  /** Latest time at which isLost() becomes true if no heartbeat arrives (the explicit bound), or Infinity before the first heartbeat. */
  deadline(): number;
  /** Forget history (after a reboot or reconnect). */
  reset(): void;
  readonly kind: 'fixed' | 'phi';
}

/** How often the host PINGs and how many unanswered intervals it tolerates. */
export interface HeartbeatSchedule {
  /** PING interval in ms (integer > 0). */
  intervalMs: number;
  /** Consecutive silent intervals that make the board lost (integer > 0). */
  misses: number;
}

/** Throws a RangeError unless `value` is an integer > 0. `what` names the option in the message. */
export function requirePositiveInteger(value: number, what: string): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`${what} must be an integer > 0, got ${String(value)}`);
  }
}

/** Throws a RangeError unless `at` is a finite number (a timestamp in ms). */
export function requireTimestamp(at: number, what = 'timestamp'): void {
  if (typeof at !== 'number' || !Number.isFinite(at)) {
    throw new RangeError(`${what} must be a finite number of ms, got ${String(at)}`);
  }
}

/**
 * Lost when `now - lastHeartbeat >= intervalMs * misses`: the board had `misses` whole ping
 * intervals to answer and did not. Before the first heartbeat the board is never lost (there
 * is nothing to time out from; connecting is the session's business, not the detector's).
 */
export class FixedTimeoutDetector implements FailureDetector {
  readonly kind = 'fixed' as const;
  /** The silence after the last heartbeat that makes the board lost: intervalMs x misses. */
  readonly boundMs: number;
  private last = -Infinity;

  constructor(options: HeartbeatSchedule) {
    requirePositiveInteger(options.intervalMs, 'intervalMs');
    requirePositiveInteger(options.misses, 'misses');
    this.boundMs = options.intervalMs * options.misses;
  }

  heartbeat(at: number): void {
    requireTimestamp(at, 'heartbeat time');
    // A timestamp older than the newest one (frames handled out of order) must not pull the
    // deadline back.
    if (at > this.last) this.last = at;
  }

  isLost(now: number): boolean {
    return now >= this.deadline();
  }

  deadline(): number {
    return this.last === -Infinity ? Infinity : this.last + this.boundMs;
  }

  reset(): void {
    this.last = -Infinity;
  }
}
