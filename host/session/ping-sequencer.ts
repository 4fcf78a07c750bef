/**
 * PING sequence numbers and PONG matching. The wire carries seq as a u14 (0..16383) that
 * wraps, so the sequencer keeps its own unwrapped issue counter and remembers only the last
 * `window` PINGs (send time, answered or not): memory is bounded however long the session
 * runs or however many PONGs never come.
 */
import { MAX_U14 } from '../../shared/protocol/constants.ts';

/** Number of distinct sequence numbers on the wire (u14). */
export const SEQ_MODULUS = MAX_U14 + 1;

/**
 * What a PONG's seq means:
 * - `{ rttMs }`: answers an outstanding PING, in order; rttMs = arrival - send time.
 * - `{ reordered: true }`: answers an outstanding PING, but a newer PING was already
 *   answered. No RTT (see PingSequencer).
 * - `{ unexpected: 'duplicate' }`: that PING was already answered.
 * - `{ unexpected: 'stale' }`: a PING issued too long ago to remember (or before reset()).
 * - `{ unexpected: 'unknown' }`: no PING with that seq was sent recently (or it is not a u14).
 *
 * Whatever the result, the PONG came from the device: callers should count it as a
 * heartbeat. The result only says whether it yields an RTT sample and what to log;
 * `rttMs` can be read on every variant (undefined unless it is a sample).
 */
export type PongMatch =
  | { rttMs: number; reordered?: undefined }
  | { reordered: true; rttMs?: undefined }
  | { unexpected: 'unknown' | 'duplicate' | 'stale'; rttMs?: undefined };

/** PingSequencer.answer() codes (an RTT is >= 0). */
export const PONG_REORDERED = -1;
export const PONG_UNKNOWN = -2;
export const PONG_DUPLICATE = -3;
export const PONG_STALE = -4;

/** What a stray answer() code means, as match() says it. */
export function strayReason(code: number): 'unknown' | 'duplicate' | 'stale' {
  return code === PONG_DUPLICATE ? 'duplicate' : code === PONG_STALE ? 'stale' : 'unknown';
}

export interface PingSequencerOptions {
  /** PINGs remembered (integer, 1..8192). Default 64. */
  window?: number;
  /** First seq issued (0..16383). Default 0. */
  start?: number;
}

/**
 * Issues seqs and classifies PONGs.
 *
 * Reordered PONGs (a PONG for PING n arriving after the PONG for a newer PING m > n) are
 * matched and marked answered but give no RTT. Serial and TCP links deliver in order and the
 * firmware answers in order, so such a PONG is an anomaly: a seq aliased across the u14 wrap,
 * a buffer replayed after a reconnect, a device answering from a stale queue. Its delay may
 * not be the round trip of the PING we think it answers; one missing sample costs nothing,
 * a wrong one skews max, p99 and the smoothed RTT. It still proves the device alive.
 *
 * 'stale' versus 'unknown' for a seq not in the window: a seq at most min(issued, 8192) PINGs
 * behind the newest was issued by us (and forgotten); anything else, including seqs "ahead"
 * of the newest, was never sent. With a 14-bit space this is the best that can be told apart.
 */
export class PingSequencer {
  readonly window: number;
  private readonly start: number;
  /**
   * The remembered PINGs, by unwrapped issue number (index) modulo the window: send time and
   * whether answered. Rings, not an object per PING: one PING a second per board, each
   * remembered for `window` PINGs, made an object that lived long enough to reach V8's old
   * generation, for every board every second. A seq maps to at most one remembered index
   * (the window is at most half the seq space).
   */
  private readonly sentAt: Float64Array;
  private readonly answered: Uint8Array;
  /** PINGs issued so far; the next one gets index `issued`. */
  private issued = 0;
  /** Lowest index still in `sent` (eviction and reset() move it). */
  private oldestTracked = 0;
  private newestAnswered = -1;

  constructor(options: PingSequencerOptions = {}) {
    this.window = options.window ?? 64;
    this.start = options.start ?? 0;
    // The window must stay well inside the seq space so no two remembered PINGs share a seq.
    if (!Number.isInteger(this.window) || this.window < 1 || this.window > SEQ_MODULUS / 2) {
      throw new RangeError(`window must be an integer in 1..${SEQ_MODULUS / 2}, got ${String(this.window)}`);
    }
    if (!Number.isInteger(this.start) || this.start < 0 || this.start > MAX_U14) {
      throw new RangeError(`start must be an integer in 0..${MAX_U14}, got ${String(this.start)}`);
    }
    this.sentAt = new Float64Array(this.window);
    this.answered = new Uint8Array(this.window);
  }

  /** Issues the seq for a PING sent at `at` (ms), wrapping 16383 -> 0. */
  next(at: number): number {
    requireTime(at);
    const index = this.issued++;
    const slot = index % this.window;
    this.sentAt[slot] = at;
    this.answered[slot] = 0;
    if (this.issued - this.oldestTracked > this.window) this.oldestTracked++; // its slot was the one just reused
    return this.seqOf(index);
  }

  /** Classifies a PONG with `seq` received at `at` (ms). Never throws for any seq. */
  match(seq: number, at: number): PongMatch {
    const code = this.answer(seq, at);
    if (code >= 0) return { rttMs: code };
    if (code === PONG_REORDERED) return { reordered: true };
    return { unexpected: strayReason(code) };
  }

  /**
   * match() without a result object, for the PONG of every board every interval: the RTT
   * (>= 0), PONG_REORDERED, or a stray code (PONG_UNKNOWN, PONG_DUPLICATE, PONG_STALE; see
   * strayReason). The same classification and bookkeeping as match().
   */
  answer(seq: number, at: number): number {
    requireTime(at);
    if (!Number.isInteger(seq) || seq < 0 || seq > MAX_U14) return PONG_UNKNOWN;
    // The one index that could carry this seq among the remembered ones: the newest such.
    const index = this.issued - 1 - ((this.seqOf(this.issued - 1) - seq + SEQ_MODULUS) % SEQ_MODULUS);
    if (this.issued === 0 || index < this.oldestTracked) return this.wasIssued(seq) ? PONG_STALE : PONG_UNKNOWN;
    const slot = index % this.window;
    if (this.answered[slot] === 1) return PONG_DUPLICATE;
    this.answered[slot] = 1;
    if (index < this.newestAnswered) return PONG_REORDERED;
    this.newestAnswered = index;
    // A clock that stepped back must not produce a negative RTT.
    return Math.max(0, at - this.sentAt[slot]!);
  }

  /**
   * Forgets every remembered PING (after a reconnect or reboot) but keeps numbering where it
   * was, so late PONGs for old PINGs read as 'stale' rather than matching new PINGs.
   */
  reset(): void {
    this.oldestTracked = this.issued;
    this.newestAnswered = -1;
  }

  /** PINGs remembered (at most `window`). */
  get tracked(): number {
    return this.issued - this.oldestTracked;
  }

  /** Remembered PINGs not answered yet. */
  get unanswered(): number {
    let count = 0;
    for (let index = this.oldestTracked; index < this.issued; index++) if (this.answered[index % this.window] === 0) count++;
    return count;
  }

  /** PINGs issued since construction. */
  get issuedCount(): number {
    return this.issued;
  }

  private seqOf(index: number): number {
    return (this.start + index) % SEQ_MODULUS;
  }

  private wasIssued(seq: number): boolean {
    if (this.issued === 0) return false;
    const behindNewest = (this.seqOf(this.issued - 1) - seq + SEQ_MODULUS) % SEQ_MODULUS;
    return behindNewest < Math.min(this.issued, SEQ_MODULUS / 2);
  }
}

function requireTime(at: number): void {
  if (typeof at !== 'number' || !Number.isFinite(at)) {
    throw new RangeError(`time must be a finite number of ms, got ${String(at)}`);
  }
}
