import { IdleTimeoutLearner, margin, tolerance, type CutCause, type LearnedPath } from '../mqtt/idle-timeout-learner.ts';

/**
 * What a path to a tcp:// bridge (ser2net, a relay, a NAT in between) does to idle
 * connections, and how often the link must carry traffic to stay below it: pure (no I/O, no
 * timers; time is passed in), driven by a ManualClock in the unit tests.
 *
 * The knowledge is the broker leg's (IdleTimeoutLearner: the longest idle age proven safe L,
 * the standing cuts and the upper bound U they give, the interval below them). What differs is
 * the search: a bridge serves one client (ser2net, ESP-Link), so there is no second, probe
 * connection to risk; every idle time above L is tried on the live link, where a cut costs the
 * board a reconnect. So the search is careful, in the manner of ActiveSync's Direct Push and
 * WeChat's smart heartbeat:
 *   - the first cut lowers the interval at once (a close at idle age T: T minus a margin, and
 *     that is the timeout measured, nothing to search; a silent cut at idle age p: what is
 *     proven, the floor while nothing is);
 *   - after `successesPerStep` answered PINGs at the interval in force, it steps up by
 *     `growth` (never past U minus the margin);
 *   - a cut while a cut already stands ends the search: it settles at the last good value
 *     (L, proven), not at the step that failed. At most one cut while searching, so two in all.
 *   - settled, the bound is tried again (one step just past U) after `recheckAfterMs` (a day),
 *     so a path that got better gives the longer interval back: at most one cut a day.
 * The interval never goes below `minIntervalMs` nor above the ping interval (which stays the
 * detection bound: the interval here only adds traffic when the link has been idle that long).
 */

/** What is stored per bridge path (JSON) and restored at the next start. */
export interface LearnedBridgePath {
  version: 1;
  learned: LearnedPath;
  /** Wall-clock time the search settled (null: still searching, or nothing to search). */
  settledAt: number | null;
}

export interface BridgeIdleLearnerOptions {
  /** The device's ping interval (ms): the ceiling; with no cut, no traffic is added. */
  pingIntervalMs: number;
  /** The shortest interval used (default 2000). Cuts at shorter idle ages teach nothing. */
  minIntervalMs?: number;
  /** Answered PINGs at the interval in force before the next step up (default 3). */
  successesPerStep?: number;
  /** Factor of each step up (default 1.5). */
  growth?: number;
  /** After settling, the bound is tried again after this long (default 24 h). */
  recheckAfterMs?: number;
  restored?: LearnedBridgePath;
}

export interface BridgeIntervalChange {
  intervalMs: number;
  previousMs: number;
  /** The upper bound on the path's idle timeout now (null: no cut stands). */
  timeoutMs: number | null;
  /** The new interval is a step above what is proven (a trial of the search). */
  trial: boolean;
  reason: string;
}

export class BridgeIdleLearner {
  readonly pingIntervalMs: number;
  readonly minIntervalMs: number;
  private readonly successesPerStep: number;
  private readonly growth: number;
  private readonly recheckAfterMs: number;
  private readonly inner: IdleTimeoutLearner;
  /** A step above what is proven, being tried (null: the proven interval is in force). */
  private trialMs: number | null = null;
  private successes = 0;
  private settledAtValue: number | null;
  /**
   * The last event was a survival that left no cut standing and no step on trial: another
   * survival at an age already proven changes nothing (survivalChangesNothing).
   */
  private quiet = false;

  constructor(options: BridgeIdleLearnerOptions) {
    this.pingIntervalMs = options.pingIntervalMs;
    this.minIntervalMs = Math.min(options.minIntervalMs ?? 2000, options.pingIntervalMs);
    this.successesPerStep = Math.max(1, options.successesPerStep ?? 3);
    this.growth = Math.max(1.05, options.growth ?? 1.5);
    this.recheckAfterMs = options.recheckAfterMs ?? 24 * 3600_000;
    const restored = options.restored?.version === 1 ? options.restored : undefined;
    this.inner = new IdleTimeoutLearner({ keepaliveMs: options.pingIntervalMs, minIntervalMs: this.minIntervalMs, restored: restored?.learned });
    this.settledAtValue = restored?.settledAt ?? null;
  }

  /** Send traffic on the link after this long of silence both ways (ms). */
  get intervalMs(): number {
    return this.trialMs ?? this.inner.intervalMs;
  }

  /** The interval in force is a trial (above what is proven). */
  get trying(): boolean {
    return this.trialMs !== null;
  }

  /** The upper bound on the path's idle timeout (null: no cut stands). */
  get timeoutMs(): number | null {
    return this.inner.timeoutMs;
  }

  /** Longest idle age proven to survive (null: none proven). */
  get safeMs(): number | null {
    return this.inner.safeMs;
  }

  /** Nothing left to search: no cut stands, or the search settled. */
  get learned(): boolean {
    return this.inner.timeoutMs === null || this.settledAtValue !== null;
  }

  get settledAt(): number | null {
    return this.settledAtValue;
  }

  /**
   * survived(idleMs) would change nothing and return null: no cut stands, no step is on trial,
   * the last event was a survival (so the search is marked done), and `idleMs` is proven.
   * Cheap (no arrays), for the PONG of every board every interval.
   */
  survivalChangesNothing(idleMs: number): boolean {
    if (!this.quiet) return false;
    const safe = this.inner.safeMs;
    return safe !== null && idleMs <= safe;
  }

  snapshot(): LearnedBridgePath {
    return { version: 1, learned: this.inner.snapshot(), settledAt: this.settledAtValue };
  }

  /** A PING sent after `idleMs` of silence both ways was answered. */
  survived(idleMs: number, wallNow: number): BridgeIntervalChange | null {
    const previousMs = this.intervalMs;
    const trial = this.trialMs;
    this.inner.survived(idleMs, wallNow);
    let reason = `a PING was answered after ${sec(idleMs)} idle`;
    if (trial !== null && idleMs + 100 >= trial) {
      // The step held: it is proven now (inner's L), and the count starts again there.
      this.trialMs = null;
      this.successes = 1;
      reason = `the step to ${sec(trial)} held`;
      if (this.inner.timeoutMs === null) reason += ' and refuted the old cut';
    } else if (idleMs + 100 >= this.intervalMs) {
      this.successes++;
    }
    const upper = this.inner.timeoutMs;
    if (upper !== null && this.settledAtValue !== null && wallNow - this.settledAtValue >= this.recheckAfterMs) {
      // A day settled: does the path still cut at U? One try just past it.
      this.settledAtValue = null;
      this.trialMs = this.clamp(upper + tolerance(upper) + 100);
      if (this.trialMs <= this.inner.intervalMs) this.trialMs = null;
      else reason = `re-checking the idle timeout of ${sec(upper)} (settled a while ago)`;
    } else if (upper !== null && this.settledAtValue === null && this.trialMs === null && this.successes >= this.successesPerStep) {
      this.stepUp(wallNow);
      if (this.trialMs !== null) reason = `${this.successesPerStep} PINGs answered at ${sec(previousMs)}: trying ${sec(this.trialMs)}`;
      else reason = `settled: no room for a step below ${sec(upper)} minus the margin`;
    }
    this.quiet = this.trialMs === null && this.inner.timeoutMs === null;
    return this.change(previousMs, reason);
  }

  /**
   * The link was cut after `idleMs` of silence (closed: when the close came; half-open: when
   * the PING that went unanswered was sent). Cuts under the floor teach nothing (null).
   */
  cut(idleMs: number, cause: CutCause, wallNow: number): BridgeIntervalChange | null {
    if (!(idleMs >= this.minIntervalMs)) return null;
    const previousMs = this.intervalMs;
    const hadCut = this.inner.timeoutMs !== null;
    const wasTrial = this.trialMs !== null;
    this.inner.cut(idleMs, cause, wallNow);
    this.quiet = false;
    this.trialMs = null;
    this.successes = 0;
    const how = cause === 'closed' ? 'closed by the path' : 'a PING went unanswered';
    let reason = `the link was cut after ${sec(idleMs)} idle (${how})`;
    if (cause === 'closed' || hadCut || wasTrial || this.inner.timeoutMs === null) {
      // A close is the timeout itself; a second cut (a failed step) ends the search below it.
      this.settledAtValue = wallNow;
      reason += `: settled at ${sec(this.intervalMs)}`;
    } else {
      this.settledAtValue = null;
      reason += `: searching up from ${sec(this.intervalMs)}`;
    }
    return this.change(previousMs, reason, true);
  }

  private stepUp(wallNow: number): void {
    const upper = this.inner.timeoutMs!;
    const current = this.inner.intervalMs;
    const next = this.clamp(Math.min(upper - margin(upper), current * this.growth));
    this.successes = 0;
    if (next <= current) {
      this.settledAtValue = wallNow;
      return;
    }
    this.trialMs = next;
  }

  private clamp(ms: number): number {
    return Math.min(this.pingIntervalMs, Math.max(this.minIntervalMs, Math.floor(ms / 100) * 100));
  }

  private change(previousMs: number, reason: string, always = false): BridgeIntervalChange | null {
    if (!always && this.intervalMs === previousMs) return null;
    return { intervalMs: this.intervalMs, previousMs, timeoutMs: this.inner.timeoutMs, trial: this.trialMs !== null, reason };
  }
}

function sec(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
