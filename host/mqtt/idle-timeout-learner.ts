/**
 * What a path to the broker does to idle connections, learned from what happens to them:
 * pure (no I/O, no timers; time is passed in), so it can be driven with a fake clock.
 *
 * Terms. A connection's *idle age* is the time since the older of its last packet received and
 * its last packet sent (silence both ways). A middlebox (a proxy, a load balancer, a NAT) with
 * an idle timeout T cuts a connection whose idle age reaches T: a proxy closes it (we see the
 * close at idle age T), a NAT or a load balancer forgets it silently (we see a PINGREQ sent at
 * idle age p go unanswered: T <= p). A PINGREQ answered after idle age d proves T > d.
 *
 * Knowledge: `safeMs` (L), the longest idle age proven to survive, and the cuts seen (idle age,
 * cause), minus those refuted by a longer survival (a cut at an age clearly shorter than one
 * the path survived was not an idle timeout: a broker restart, a Wi-Fi drop). The shortest
 * standing cut is the upper bound U on T; it is *exact* when two closes happened at the same
 * idle age (within a tolerance): "the same idle time again and again".
 *
 * The PINGREQ interval follows at once:
 *   - no cut: the keepalive (nothing to keep awake);
 *   - U from closes (one or more): U minus a margin (10 %, at least 1 s): a close at idle age U
 *     is the timeout itself if it is one, and the probe then confirms or refutes it;
 *   - U from an unanswered PINGREQ only (silent): T is anywhere below U, so only what is proven
 *     is used: min(L, U - margin), and the floor while nothing is proven.
 * never below `minIntervalMs` nor above the keepalive.
 *
 * The search (nextProbe) runs on a separate probe connection, so the live sessions never risk
 * a cut: it asks for an idle test of d ms, between L and U (bisection) or just past an
 * unconfirmed close (to confirm it). It has converged when U is exact and confirmed, or when
 * U - L is within the resolution (5 %, at least 1 s). After convergence the upper bound is
 * tested again every `reprobeAfterMs` (default a day), so a path that got better (a proxy
 * removed, a timeout raised) is noticed.
 */

export type CutCause = 'closed' | 'half-open';

export interface PathCut {
  /** Idle age at the cut: for `closed`, when the close came; for `half-open`, when the unanswered PINGREQ was sent. */
  idleMs: number;
  cause: CutCause;
  /** Seen on the probe connection (true) or on a live session (false). */
  probe: boolean;
  /** Wall-clock time of the cut (ms since the epoch), for people reading the stored file. */
  at: number;
}

/** What is stored per path (JSON) and restored at the next start. */
export interface LearnedPath {
  version: 1;
  safeMs: number | null;
  cuts: PathCut[];
  /** Wall-clock time of the last probe verdict that left the search converged; null: not converged. */
  convergedAt: number | null;
}

export interface IdleTimeoutLearnerOptions {
  /** The keepalive in force (ms): the interval never goes above it, and probes never idle longer. */
  keepaliveMs: number;
  /** The shortest interval used, whatever is seen (default 2000). Cuts at shorter idle ages are not learned from. */
  minIntervalMs?: number;
  /** After convergence, the upper bound is probed again after this long (default 24 h). */
  reprobeAfterMs?: number;
  /** What a previous run learned on this path. */
  restored?: LearnedPath;
}

export interface IntervalChange {
  intervalMs: number;
  previousMs: number;
  /** The upper bound on the path's idle timeout now (null: no cut stands). */
  timeoutMs: number | null;
  /** Why, in words, for the one log line. */
  reason: string;
}

export type ProbeVerdict =
  | { outcome: 'survived'; idleMs: number }
  | { outcome: 'closed'; idleMs: number }
  | { outcome: 'half-open'; idleMs: number };

const MAX_CUTS = 16;

export class IdleTimeoutLearner {
  readonly keepaliveMs: number;
  readonly minIntervalMs: number;
  readonly reprobeAfterMs: number;
  private safe: number | null;
  private cuts: PathCut[];
  private convergedAt: number | null;
  private interval: number;

  constructor(options: IdleTimeoutLearnerOptions) {
    const { keepaliveMs, minIntervalMs = 2000, reprobeAfterMs = 24 * 3600_000 } = options;
    if (!(keepaliveMs > 0)) throw new RangeError(`keepaliveMs must be > 0, got ${keepaliveMs}`);
    if (!(minIntervalMs > 0)) throw new RangeError(`minIntervalMs must be > 0, got ${minIntervalMs}`);
    this.keepaliveMs = keepaliveMs;
    this.minIntervalMs = Math.min(minIntervalMs, keepaliveMs);
    this.reprobeAfterMs = reprobeAfterMs;
    const r = options.restored;
    this.safe = r?.safeMs ?? null;
    this.cuts = (r?.cuts ?? []).filter((c) => Number.isFinite(c.idleMs) && (c.cause === 'closed' || c.cause === 'half-open')).slice(-MAX_CUTS);
    this.convergedAt = r?.convergedAt ?? null;
    this.interval = this.compute();
  }

  /** The PINGREQ interval the live sessions use now. */
  get intervalMs(): number {
    return this.interval;
  }

  /** Longest idle age proven to survive (null: none proven). */
  get safeMs(): number | null {
    return this.safe;
  }

  /** The upper bound on the path's idle timeout (null: no cut stands). */
  get timeoutMs(): number | null {
    // standing()'s minimum without its arrays: read for every board every facts check.
    let min = Infinity;
    for (let i = 0; i < this.cuts.length; i++) {
      const idleMs = this.cuts[i]!.idleMs;
      if (idleMs < min && this.stands(idleMs)) min = idleMs;
    }
    return min === Infinity ? null : min;
  }

  /** The timeout was measured from closes at the same idle age, at least twice. */
  get exact(): boolean {
    return this.exactTimeout() !== null;
  }

  /** Nothing more to search for now (no cut stands, the timeout is confirmed, or known within the resolution). */
  get converged(): boolean {
    return this.searchDone();
  }

  snapshot(): LearnedPath {
    return { version: 1, safeMs: this.safe, cuts: this.cuts.map((c) => ({ ...c })), convergedAt: this.convergedAt };
  }

  /** A live session's PINGREQ sent after `idleMs` of silence was answered. */
  survived(idleMs: number, wallNow: number): IntervalChange | null {
    const change = this.observeSurvival(idleMs, 'a PINGREQ was answered');
    this.markConverged(wallNow, false);
    return change;
  }

  /**
   * A live session was cut. Cuts of a busy connection (idle age under minIntervalMs) are not
   * idle timeouts and teach nothing (returns null).
   */
  cut(idleMs: number, cause: CutCause, wallNow: number): IntervalChange | null {
    if (!(idleMs >= this.minIntervalMs)) return null;
    const change = this.addCut({ idleMs, cause, probe: false, at: wallNow }, 'live');
    this.markConverged(wallNow, false);
    return change;
  }

  /** The probe connection's verdict on an idle test (see nextProbe). */
  probed(verdict: ProbeVerdict, wallNow: number): IntervalChange | null {
    let change: IntervalChange | null;
    if (verdict.outcome === 'survived') change = this.observeSurvival(verdict.idleMs, 'the probe connection survived');
    else change = this.addCut({ idleMs: verdict.idleMs, cause: verdict.outcome, probe: true, at: wallNow }, 'probe');
    this.markConverged(wallNow, true);
    return change;
  }

  /**
   * The idle time the probe connection should test next (ms), or null when nothing is to be
   * learned now (no cut, or converged and not yet due for a re-check).
   */
  nextProbe(wallNow: number): number | null {
    const upper = this.timeoutMs;
    if (upper === null) return null;
    if (this.convergedAt !== null) {
      if (wallNow - this.convergedAt < this.reprobeAfterMs) return null;
      // Re-check: does the path still cut at U? A survival past U refutes the old cuts.
      return Math.min(this.keepaliveMs, upper + tolerance(upper));
    }
    if (this.searchDone()) return null;
    // An unconfirmed close at U: idle a little past it; a second cut at U confirms, a survival refutes.
    if (this.nearUpper().some((c) => c.cause === 'closed')) return Math.min(this.keepaliveMs, upper + tolerance(upper));
    const lower = Math.max(this.safe ?? 0, this.minIntervalMs);
    return Math.round((lower + upper) / 2);
  }

  /** A probe verdict restarts the re-check period; live events only start it. */
  private markConverged(wallNow: number, probe: boolean): void {
    if (!this.searchDone()) this.convergedAt = null;
    else if (probe || this.convergedAt === null) this.convergedAt = wallNow;
  }

  private observeSurvival(idleMs: number, why: string): IntervalChange | null {
    if (!(idleMs > 0)) return null;
    if (this.safe !== null && idleMs <= this.safe) return null;
    this.safe = idleMs;
    return this.update(`${why} after ${seconds(idleMs)} idle`);
  }

  private addCut(cut: PathCut, source: 'live' | 'probe'): IntervalChange | null {
    this.cuts.push(cut);
    if (this.cuts.length > MAX_CUTS) this.cuts.splice(0, this.cuts.length - MAX_CUTS);
    const how = cut.cause === 'closed' ? 'closed by the path' : 'a PINGREQ went unanswered (half-open)';
    return this.update(`${source === 'probe' ? 'the probe connection' : 'a connection'} was cut after ${seconds(cut.idleMs)} idle (${how})`);
  }

  /** Cuts not refuted by a clearly longer survival. */
  private standing(): PathCut[] {
    return this.safe === null ? this.cuts : this.cuts.filter((c) => this.stands(c.idleMs));
  }

  /** A cut at this idle age still stands: the longest idle age proven to survive (L) is not past it, within tolerance. */
  private stands(idleMs: number): boolean {
    return this.safe === null || idleMs + tolerance(idleMs) > this.safe;
  }

  /** Standing cuts at about the idle age U. */
  private nearUpper(): PathCut[] {
    const upper = this.timeoutMs;
    if (upper === null) return [];
    return this.standing().filter((c) => c.idleMs - upper <= tolerance(upper));
  }

  /** A close at U, and a second cut at about U: the timeout itself. */
  private exactTimeout(): number | null {
    const near = this.nearUpper();
    return near.length >= 2 && near.some((c) => c.cause === 'closed') ? this.timeoutMs : null;
  }

  private searchDone(): boolean {
    const upper = this.timeoutMs;
    if (upper === null || this.exactTimeout() !== null) return true;
    if (this.nearUpper().some((c) => c.cause === 'closed')) return false; // one close at U, to be confirmed
    const lower = Math.max(this.safe ?? 0, this.minIntervalMs);
    return upper - lower <= resolution(upper);
  }

  private compute(): number {
    const upper = this.timeoutMs;
    if (upper === null) return this.clamp(this.keepaliveMs);
    const below = upper - margin(upper);
    if (this.nearUpper().some((c) => c.cause === 'closed')) return this.clamp(below);
    return this.clamp(Math.min(below, this.safe ?? 0));
  }

  private clamp(ms: number): number {
    return Math.min(this.keepaliveMs, Math.max(this.minIntervalMs, Math.floor(ms / 100) * 100));
  }

  private update(reason: string): IntervalChange | null {
    const previousMs = this.interval;
    this.interval = this.compute();
    if (this.interval === previousMs) return null;
    return { intervalMs: this.interval, previousMs, timeoutMs: this.timeoutMs, reason };
  }
}

/** How far below a cut the interval stays: 10 %, at least 1 s (timer jitter, the PINGREQ's own trip). */
export function margin(timeoutMs: number): number {
  return Math.max(1000, timeoutMs * 0.1);
}

/** Two cuts are at "the same idle age" within this. */
export function tolerance(idleMs: number): number {
  return Math.max(500, idleMs * 0.1);
}

/** The search stops when the timeout is known this closely. */
export function resolution(timeoutMs: number): number {
  return Math.max(1000, timeoutMs * 0.05);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
