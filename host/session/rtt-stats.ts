/**
 * Round-trip times of PING/PONG for status output and metrics: the last N samples for exact
 * percentiles, plus TCP-style smoothed RTT and RTT variation (RFC 6298) that follow trends
 * without the window's memory.
 */

export interface RttStatsOptions {
  /** Samples kept for mean/percentiles/min/max (integer > 0). Default 256. */
  windowSize?: number;
  /** Gain of the smoothed RTT (RFC 6298 alpha). Default 1/8. */
  alpha?: number;
  /** Gain of the RTT variation (RFC 6298 beta). Default 1/4. */
  beta?: number;
}

/**
 * Window statistics (count, mean, p50, p99, min, max) cover the last `windowSize` samples.
 * With no samples every statistic is NaN (a number, so it formats and compares without
 * special cases; check `count` first where that matters).
 */
/**
 * The window keeps each sample in whole microseconds, 4 bytes (a Float64Array took 8: 2 KiB per
 * board of memory outside the V8 heap, at 10,000 boards 20 MiB; issue 15). Samples over
 * MAX_SAMPLE_US (71 min) are kept as that. `last`, `smoothed` and `jitter` keep full precision.
 */
const MAX_SAMPLE_US = 0xffff_ffff;

/** Where sortSamples sorts (one for all: see there), and whose window it holds (in ms). */
let scratch = new Float64Array(256);
let scratchOwner: RttStats | null = null;

export class RttStats {
  readonly windowSize: number;
  private readonly alpha: number;
  private readonly beta: number;
  /**
   * The window, a ring (made at the first sample, at its full size: a growing array ends up
   * with a third more room than it holds, per board); `filled` of it used.
   */
  private samples: Uint32Array | null = null;
  private filled = 0;
  private nextSlot = 0;
  /** The scratch holds this window sorted (see sortSamples). */
  private sortedInScratch = false;
  private lastSample = Number.NaN;
  private srtt = Number.NaN;
  private rttvar = Number.NaN;
  private totalCount = 0;

  constructor(options: RttStatsOptions = {}) {
    this.windowSize = options.windowSize ?? 256;
    this.alpha = options.alpha ?? 1 / 8;
    this.beta = options.beta ?? 1 / 4;
    if (!Number.isInteger(this.windowSize) || this.windowSize <= 0) {
      throw new RangeError(`windowSize must be an integer > 0, got ${String(this.windowSize)}`);
    }
    for (const [what, gain] of [['alpha', this.alpha], ['beta', this.beta]] as const) {
      if (!(gain > 0 && gain <= 1)) throw new RangeError(`${what} must be in (0, 1], got ${String(gain)}`);
    }
  }

  /** Records one RTT in ms (finite, >= 0; anything else is a caller bug and throws a RangeError). */
  add(ms: number): void {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`RTT must be a finite number >= 0, got ${String(ms)}`);
    }
    const samples = (this.samples ??= new Uint32Array(this.windowSize));
    const us = Math.min(Math.round(ms * 1000), MAX_SAMPLE_US);
    if (this.filled < this.windowSize) {
      samples[this.filled++] = us;
    } else {
      samples[this.nextSlot] = us;
      this.nextSlot = (this.nextSlot + 1) % this.windowSize;
    }
    this.dropSorted();
    this.lastSample = ms;
    this.totalCount++;
    if (this.totalCount === 1) {
      // RFC 6298 2.2: the first measurement seeds SRTT = R, RTTVAR = R / 2.
      this.srtt = ms;
      this.rttvar = ms / 2;
    } else {
      // RFC 6298 2.3: RTTVAR uses the SRTT from before this sample.
      this.rttvar = (1 - this.beta) * this.rttvar + this.beta * Math.abs(this.srtt - ms);
      this.srtt = (1 - this.alpha) * this.srtt + this.alpha * ms;
    }
  }

  /** Forgets every sample and the smoothed values. */
  reset(): void {
    this.filled = 0;
    this.nextSlot = 0;
    this.dropSorted();
    this.lastSample = this.srtt = this.rttvar = Number.NaN;
    this.totalCount = 0;
  }

  /** Samples in the window. */
  get count(): number {
    return this.filled;
  }

  /** Samples ever added (since construction or reset()). */
  get total(): number {
    return this.totalCount;
  }

  /** Most recent sample. */
  get last(): number {
    return this.lastSample;
  }

  get mean(): number {
    const samples = this.samples;
    if (samples === null || this.filled === 0) return Number.NaN;
    let sum = 0;
    for (let i = 0; i < this.filled; i++) sum += samples[i]!;
    return sum / this.filled / 1000;
  }

  get min(): number {
    return this.filled === 0 ? Number.NaN : this.sortSamples()[0]!;
  }

  get max(): number {
    return this.filled === 0 ? Number.NaN : this.sortSamples()[this.filled - 1]!;
  }

  get p50(): number {
    return this.percentile(50);
  }

  get p99(): number {
    return this.percentile(99);
  }

  /** Smoothed RTT (TCP SRTT): EWMA with gain alpha. */
  get smoothed(): number {
    return this.srtt;
  }

  /** RTT variation (TCP RTTVAR): EWMA of |SRTT - sample| with gain beta. */
  get jitter(): number {
    return this.rttvar;
  }

  /**
   * Nearest-rank percentile over the window: the smallest sample with at least p% of the
   * samples at or below it. Always an actual sample, never an interpolation. p in (0, 100].
   */
  percentile(p: number): number {
    if (!(p > 0 && p <= 100)) throw new RangeError(`percentile must be in (0, 100], got ${String(p)}`);
    const n = this.filled;
    if (n === 0) return Number.NaN;
    // p * n first: (p / 100) * n can land a hair above an integer and skip a rank.
    return this.sortSamples()[Math.ceil((p * n) / 100) - 1]!;
  }

  // Sorted lazily and cached until the next add(): status output asks for several
  // percentiles at once, samples arrive about once a second.
  /**
   * The window sorted, in the first `filled` slots of a scratch array shared by every RttStats
   * (status output asks for several percentiles of one board at once; samples arrive about once
   * a second): no array per board per question, and a typed array sorts without a comparator.
   */
  private sortSamples(): Float64Array {
    const n = this.filled;
    if (!this.sortedInScratch || scratchOwner !== this) {
      if (scratch.length < n) scratch = new Float64Array(Math.max(n, 2 * scratch.length));
      const samples = this.samples!;
      for (let i = 0; i < n; i++) scratch[i] = samples[i]! / 1000;
      // A full window fills the whole scratch: sorted as it is, without a subarray object.
      if (n === scratch.length) scratch.sort();
      else scratch.subarray(0, n).sort();
      scratchOwner = this;
      this.sortedInScratch = true;
    }
    return scratch;
  }

  private dropSorted(): void {
    this.sortedInScratch = false;
    if (scratchOwner === this) scratchOwner = null;
  }
}
