/**
 * Phi accrual failure detector (Hayashibara, Defago, Yared, Katayama, 2004), in the form
 * Akka and Cassandra use: keep a sliding window of heartbeat inter-arrival times, model them
 * as a normal distribution, and report phi = -log10(P(a heartbeat still arrives later than
 * now)). phi = 1 means a 10% chance the silence is normal, phi = 8 one in 10^8.
 *
 * Unlike a fixed timeout it adapts to the link: on a jittery link (a TCP bridge, a USB hub
 * under load) the measured spread is wide and phi grows slowly, so late PONGs do not make the
 * board "lost". Two hard limits keep it predictable:
 * - never lost before `minBoundMs` of silence (default intervalMs x misses, the fixed
 *   detector's bound), so phi is never stricter than the fixed timeout with the same
 *   schedule. Without this floor a burst of frequent frames (telemetry) would shrink the
 *   learned interval and make the next ordinary one-second PONG gap look fatal;
 * - always lost after `maxBoundMs` of silence (default 3 x intervalMs x misses), the
 *   explicit bound that deadline() promises whatever the history says.
 */
import {
  requirePositiveInteger,
  requireTimestamp,
  type FailureDetector,
  type HeartbeatSchedule,
} from './failure-detector.ts';

export interface PhiAccrualOptions extends HeartbeatSchedule {
  /** phi at or above which the board is lost (> 0). Default 8. */
  threshold?: number;
  /** Inter-arrival samples kept (integer > 0). Default 100. */
  windowSize?: number;
  /** Floor for the standard deviation, in ms, so a very regular link does not make phi explode on the first late PONG. Default 50. */
  minStdDevMs?: number;
  /** Added to the mean interval: a pause the application expects and tolerates. Default 0. */
  acceptableHeartbeatPauseMs?: number;
  /** Mean interval assumed until 2 samples exist (stddev = mean / 4). Default intervalMs. */
  firstHeartbeatEstimateMs?: number;
  /**
   * Until this many inter-arrival samples exist the learned distribution is not trusted and
   * the board is lost only at maxBoundMs: a handful of samples underestimates the spread of a
   * jittery link, and the bootstrap guess may not fit it at all. 0 trusts phi from the first
   * heartbeat (with the bootstrap estimate). Default 16.
   */
  warmupSamples?: number;
  /** Heartbeats closer than this to the previous sampled one refresh liveness but add no sample. Default intervalMs / 2. */
  coalesceMs?: number;
  /** Never lost before this much silence. Default intervalMs x misses. */
  minBoundMs?: number;
  /** Always lost after this much silence. Default 3 x intervalMs x misses. */
  maxBoundMs?: number;
}

// Logistic approximation of the standard normal CDF (Bowling et al. 2009, as in Akka):
// 1 - CDF(y) ~= 1 / (1 + exp(z)) with z = y * (A1 + A3 * y^2). Error < 1.4e-4 in the CDF.
const A1 = 1.5976;
const A3 = 0.070566;

/** z(y) from the approximation above; strictly increasing in y. */
function logisticExponent(y: number): number {
  return y * (A1 + A3 * y * y);
}

/**
 * phi = -log10(1 / (1 + e^z)) = ln(1 + e^z) / ln 10, computed as a softplus so neither
 * branch overflows or takes log(0): for large z it is z / ln 10 (finite), for very negative
 * z it tends to 0.
 */
function phiFromExponent(z: number): number {
  const softplus = z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
  return softplus / Math.LN10;
}

/**
 * The y (in standard deviations above the mean) at which phi reaches `threshold`: solve
 * ln(1 + e^z) = threshold * ln 10 for z, then the cubic A3 y^3 + A1 y - z = 0, which has one
 * real root since it is strictly increasing (Cardano, polished with Newton steps).
 */
function thresholdInStdDevs(threshold: number): number {
  // z = ln(10^T - 1), written so 10^T cannot overflow.
  const z = threshold * Math.LN10 + Math.log1p(-Math.pow(10, -threshold));
  const p = A1 / A3;
  const q = -z / A3;
  const root = Math.sqrt((q * q) / 4 + (p * p * p) / 27);
  let y = Math.cbrt(-q / 2 + root) + Math.cbrt(-q / 2 - root);
  for (let i = 0; i < 3; i++) {
    y -= (logisticExponent(y) - z) / (A1 + 3 * A3 * y * y);
  }
  return y;
}

export class PhiAccrualDetector implements FailureDetector {
  readonly kind = 'phi' as const;
  readonly threshold: number;
  readonly minBoundMs: number;
  readonly maxBoundMs: number;
  private readonly windowSize: number;
  private readonly minStdDevMs: number;
  private readonly pauseMs: number;
  private readonly firstEstimateMs: number;
  private readonly coalesceMs: number;
  private readonly warmupSamples: number;
  private readonly yThreshold: number;

  // Ring buffer of inter-arrival samples.
  private readonly samples: number[] = [];
  private nextSlot = 0;
  /** Newest heartbeat: silence is measured from here. */
  private last = -Infinity;
  /** Newest heartbeat that started a sample: intervals are measured between anchors. */
  private anchor = -Infinity;
  // Distribution parameters as used by phi(), recomputed on each sample.
  private mean = 0;
  private stdDev = 1;
  /** Silence after `last` at which the board is lost (floor/ceiling applied). */
  private lostAfterMs = Infinity;

  constructor(options: PhiAccrualOptions) {
    requirePositiveInteger(options.intervalMs, 'intervalMs');
    requirePositiveInteger(options.misses, 'misses');
    const fixedBound = options.intervalMs * options.misses;
    this.threshold = options.threshold ?? 8;
    this.windowSize = options.windowSize ?? 100;
    this.minStdDevMs = options.minStdDevMs ?? 50;
    this.pauseMs = options.acceptableHeartbeatPauseMs ?? 0;
    this.firstEstimateMs = options.firstHeartbeatEstimateMs ?? options.intervalMs;
    this.coalesceMs = options.coalesceMs ?? options.intervalMs / 2;
    this.warmupSamples = options.warmupSamples ?? 16;
    this.minBoundMs = options.minBoundMs ?? fixedBound;
    this.maxBoundMs = options.maxBoundMs ?? 3 * fixedBound;

    requirePositive(this.threshold, 'threshold');
    requirePositiveInteger(this.windowSize, 'windowSize');
    requirePositive(this.minStdDevMs, 'minStdDevMs');
    requireNonNegative(this.pauseMs, 'acceptableHeartbeatPauseMs');
    requirePositive(this.firstEstimateMs, 'firstHeartbeatEstimateMs');
    requireNonNegative(this.coalesceMs, 'coalesceMs');
    if (!Number.isInteger(this.warmupSamples) || this.warmupSamples < 0) {
      throw new RangeError(`warmupSamples must be an integer >= 0, got ${String(this.warmupSamples)}`);
    }
    requireNonNegative(this.minBoundMs, 'minBoundMs');
    requirePositive(this.maxBoundMs, 'maxBoundMs');
    if (this.minBoundMs > this.maxBoundMs) {
      throw new RangeError(`minBoundMs (${this.minBoundMs}) must not exceed maxBoundMs (${this.maxBoundMs})`);
    }
    this.yThreshold = thresholdInStdDevs(this.threshold);
    this.updateDistribution();
  }

  heartbeat(at: number): void {
    requireTimestamp(at, 'heartbeat time');
    if (this.last === -Infinity) {
      this.last = this.anchor = at;
      return;
    }
    // Out-of-order timestamps carry no news about the newest silence.
    if (at <= this.last) return;
    this.last = at;
    // Frames in quick succession (a PONG and telemetry, a burst) are one liveness event: as
    // separate samples they would drag the mean towards zero.
    if (at - this.anchor < this.coalesceMs) return;
    this.addSample(at - this.anchor);
    this.anchor = at;
    this.updateDistribution();
  }

  /**
   * Suspicion level at `now`: 0 before the first heartbeat, then strictly increasing with the
   * silence since the last one. Always finite for finite `now`; for logs and metrics.
   */
  phi(now: number): number {
    if (this.last === -Infinity) return 0;
    // Clamped so y^3 cannot overflow to Infinity; phi there is ~1e299 anyway.
    const y = Math.min((now - this.last - this.mean) / this.stdDev, 1e100);
    return phiFromExponent(logisticExponent(y));
  }

  /**
   * Lost when phi(now) >= threshold and the silence has reached minBoundMs, or the silence has
   * reached maxBoundMs (during warm-up only the latter). phi is strictly increasing in the
   * silence, so the phi condition is the silence passing a point computed once per heartbeat;
   * this keeps isLost() O(1) and exactly consistent with deadline().
   */
  isLost(now: number): boolean {
    return now >= this.deadline();
  }

  deadline(): number {
    return this.last === -Infinity ? Infinity : this.last + this.lostAfterMs;
  }

  reset(): void {
    this.samples.length = 0;
    this.nextSlot = 0;
    this.last = this.anchor = -Infinity;
    this.updateDistribution();
  }

  /** Inter-arrival samples currently in the window. */
  get sampleCount(): number {
    return this.samples.length;
  }

  /** Mean interval in ms as used by phi (including acceptableHeartbeatPauseMs). */
  get meanMs(): number {
    return this.mean;
  }

  /** Standard deviation in ms as used by phi (after the minStdDevMs floor). */
  get stdDevMs(): number {
    return this.stdDev;
  }

  private addSample(interval: number): void {
    if (this.samples.length < this.windowSize) {
      this.samples.push(interval);
    } else {
      this.samples[this.nextSlot] = interval;
      this.nextSlot = (this.nextSlot + 1) % this.windowSize;
    }
  }

  private updateDistribution(): void {
    let mean: number;
    let stdDev: number;
    if (this.samples.length < 2) {
      mean = this.firstEstimateMs;
      stdDev = this.firstEstimateMs / 4;
    } else {
      // Two passes over at most windowSize values: exact, and no running-sum drift over a
      // long-lived session.
      let sum = 0;
      for (const s of this.samples) sum += s;
      mean = sum / this.samples.length;
      let squares = 0;
      for (const s of this.samples) squares += (s - mean) * (s - mean);
      stdDev = Math.sqrt(squares / this.samples.length);
    }
    this.mean = mean + this.pauseMs;
    this.stdDev = Math.max(stdDev, this.minStdDevMs);
    if (this.samples.length < this.warmupSamples) {
      this.lostAfterMs = this.maxBoundMs;
      return;
    }
    const phiCrossing = this.mean + this.yThreshold * this.stdDev;
    this.lostAfterMs = Math.min(Math.max(phiCrossing, this.minBoundMs), this.maxBoundMs);
  }
}

function requirePositive(value: number, what: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${what} must be a finite number > 0, got ${String(value)}`);
  }
}

function requireNonNegative(value: number, what: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${what} must be a finite number >= 0, got ${String(value)}`);
  }
}
