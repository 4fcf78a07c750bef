/**
 * At most `limit` holders at once; the others wait in order (first come, first served). The
 * gateway starts its boards' MQTT sessions through one (issue 15): 10,000 CONNECTs at once, each
 * followed by its board's start-up publishes, kept the event loop busy for seconds, long enough
 * for every board's link to miss its PONGs and go lost; a bounded number connecting at a time
 * keeps every turn short.
 */
export class StartGate {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be an integer >= 1, got ${String(limit)}`);
  }

  /** Holders now. */
  get inUse(): number {
    return this.active;
  }

  /** Waiting for a place. */
  get queued(): number {
    return this.waiting.length;
  }

  /** A place now if one is free: the function that gives it back (once; later calls do nothing). Else null. */
  tryEnter(): (() => void) | null {
    if (this.active >= this.limit || this.waiting.length > 0) return null;
    this.active++;
    return this.releaser();
  }

  /** Resolves with a place (the function that gives it back) once one is free. */
  enter(): Promise<() => void> {
    const now = this.tryEnter();
    if (now) return Promise.resolve(now);
    return new Promise((resolve) =>
      this.waiting.push(() => {
        this.active++;
        resolve(this.releaser());
      }),
    );
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      if (this.active < this.limit) this.waiting.shift()?.();
    };
  }
}
