import { silentLogger, type Logger } from '../log/logger.ts';
import type { Clock, TimerHandle, WallClock } from '../time/clock.ts';
import type { IdleProbeResult } from './idle-probe.ts';
import { IdleTimeoutLearner, type IntervalChange, type LearnedPath } from './idle-timeout-learner.ts';
import type { DropCause, KeepaliveTraffic } from './keepalive-traffic.ts';
import { KeepalivePathStore } from './keepalive-path-store.ts';

export interface PathKeepaliveOptions {
  /** The broker URL; stored without credentials (pathKey). */
  url: string;
  /** The keepalive sent in CONNECT (ms): the interval never exceeds it. */
  keepaliveMs: number;
  /** A fixed PINGREQ interval instead of learning (ms). */
  fixedIntervalMs?: number;
  /** The shortest interval learning may choose (ms, default 2000). */
  minIntervalMs?: number;
  /** JSON file where what was learned is kept per path (null: not kept). */
  storeFile: string | null;
  /** The store of that file, when others (tcp:// bridges) write to it too: one store per file. */
  store?: KeepalivePathStore;
  /** Runs one idle test on a separate connection (probeIdle with the sessions' URL and credentials). */
  probe: (idleMs: number, signal: AbortSignal) => Promise<IdleProbeResult>;
  clock: Clock & WallClock;
  logger?: Logger;
  /** Pause between two probe tests (default 1000 ms) and after a failed one (default 30 s). */
  probePauseMs?: number;
  probeRetryMs?: number;
}

export interface PathKeepaliveStats {
  path: string;
  intervalMs: number;
  /** Upper bound on the path's idle timeout (null: no cut stands). */
  timeoutMs: number | null;
  /** The timeout was measured (closes at the same idle age), not only bounded. */
  exact: boolean;
  /** Nothing left to search for now. */
  learned: boolean;
  /** Cuts reported by the live sessions, by cause. */
  drops: Record<DropCause, number>;
  probes: number;
}

type Events = { change: [stats: PathKeepaliveStats] };

/** The broker URL without credentials, query or fragment: the key under which a path is stored. */
export function pathKey(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//');
  }
}

/**
 * The keepalive traffic of every broker session on one path (the gateway's URL): one
 * IdleTimeoutLearner fed by all the sessions' cuts and answered PINGREQs, the probe
 * connection that searches for the longest safe interval without risking a live session, and
 * what was learned kept in `storeFile` so a restart starts from it. One log line per change of
 * interval, naming the observed timeout.
 */
export class PathKeepalive implements KeepaliveTraffic {
  readonly key: string;
  private readonly options: PathKeepaliveOptions;
  private readonly clock: Clock & WallClock;
  private readonly log: Logger;
  private learner: IdleTimeoutLearner;
  private readonly listeners = new Set<(ms: number) => void>();
  private readonly changeListeners = new Set<(s: PathKeepaliveStats) => void>();
  private readonly drops: Record<DropCause, number> = { closed: 0, 'half-open': 0 };
  private probes = 0;
  private timer: TimerHandle | null = null;
  private probing: AbortController | null = null;
  private running = false;
  private readonly store: KeepalivePathStore | null;
  /** The learner had nothing left to search for at the last look (for the one 'learned' line). */
  private wasLearned = true;

  constructor(options: PathKeepaliveOptions) {
    this.options = options;
    this.key = pathKey(options.url);
    this.clock = options.clock;
    this.log = (options.logger ?? silentLogger).child({ component: 'path-keepalive', path: this.key });
    this.learner = this.newLearner();
    this.store = options.store ?? (options.storeFile ? new KeepalivePathStore(options.storeFile, this.log) : null);
  }

  get learning(): boolean {
    return this.options.fixedIntervalMs === undefined;
  }

  get intervalMs(): number {
    return this.options.fixedIntervalMs !== undefined ? Math.min(this.options.fixedIntervalMs, this.options.keepaliveMs) : this.learner.intervalMs;
  }

  get stats(): PathKeepaliveStats {
    return {
      path: this.key,
      intervalMs: this.intervalMs,
      timeoutMs: this.learner.timeoutMs,
      exact: this.learner.exact,
      learned: this.learner.converged,
      drops: { ...this.drops },
      probes: this.probes,
    };
  }

  onIntervalChange(listener: (intervalMs: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Any change: interval, a cut counted, a probe verdict. */
  onChange(listener: (stats: PathKeepaliveStats) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Reads what was learned before on this path, then searches if there is anything to search. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    if (!this.learning) {
      this.log.info({ intervalMs: this.intervalMs }, `PINGREQ every ${sec(this.intervalMs)} (broker.keepaliveTraffic.intervalSec; not learning)`);
      return;
    }
    const stored = await this.load();
    if (stored) {
      this.learner = this.newLearner(stored);
      const { timeoutMs } = this.learner;
      if (timeoutMs !== null) {
        this.log.info(
          { intervalMs: this.intervalMs, observedTimeoutMs: timeoutMs },
          `this path cut idle connections after ${sec(timeoutMs)} before: PINGREQ every ${sec(this.intervalMs)} (learned, from ${this.options.storeFile})`,
        );
      }
    }
    this.schedule(0);
  }

  stop(): void {
    this.running = false;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.probing?.abort();
    this.probing = null;
  }

  /** Waits for the last write of the store file. */
  async flushed(): Promise<void> {
    await this.store?.flushed();
  }

  survived(idleMs: number): void {
    if (!this.learning) return;
    this.apply(this.learner.survived(idleMs, this.clock.wallNow()), null);
    this.noteLearned();
  }

  cut(idleMs: number, cause: DropCause): void {
    this.drops[cause]++;
    if (!this.learning) return this.emitChange();
    const change = this.learner.cut(idleMs, cause, this.clock.wallNow());
    this.apply(change, { idleMs, cause });
    this.noteLearned();
    if (!change) this.emitChange();
    // Something to confirm or search: the probe starts now rather than at its next check.
    if (this.running && !this.probing) this.schedule(0);
  }

  private apply(change: IntervalChange | null, cut: { idleMs: number; cause: DropCause } | null): void {
    if (!change) return;
    const timeout = change.timeoutMs;
    const fields = { intervalMs: change.intervalMs, previousMs: change.previousMs, observedTimeoutMs: timeout, exact: this.learner.exact, reason: change.reason };
    if (cut && change.intervalMs < change.previousMs) {
      const how = cut.cause === 'closed' ? 'closed by the path' : 'half-open: a PINGREQ went unanswered';
      this.log.warn(
        fields,
        `connections to ${this.key} are cut after ${sec(cut.idleMs)} idle (${how}): PINGREQ every ${sec(change.intervalMs)} from now on (was ${sec(change.previousMs)})`,
      );
    } else {
      this.log.info(
        fields,
        `${change.reason}: PINGREQ every ${sec(change.intervalMs)} (was ${sec(change.previousMs)})${timeout === null ? ', no idle timeout stands' : `, idle timeout ${this.learner.exact ? '' : 'at most '}${sec(timeout)}`}`,
      );
    }
    for (const l of this.listeners) l(change.intervalMs);
    this.emitChange();
    this.save();
  }

  /** One info line when the search ends (the timeout confirmed or known within the resolution). */
  private noteLearned(): void {
    const learned = this.learner.converged;
    if (learned && !this.wasLearned) {
      const { timeoutMs } = this.learner;
      this.log.info(
        { intervalMs: this.intervalMs, observedTimeoutMs: timeoutMs, exact: this.learner.exact, probes: this.probes },
        timeoutMs === null
          ? `learned: ${this.key} keeps idle connections; PINGREQ every ${sec(this.intervalMs)}`
          : `learned the idle timeout of ${this.key}: ${this.learner.exact ? '' : 'at most '}${sec(timeoutMs)}; PINGREQ every ${sec(this.intervalMs)}`,
      );
    }
    this.wasLearned = learned;
  }

  private emitChange(): void {
    const stats = this.stats;
    for (const l of this.changeListeners) l(stats);
  }

  private schedule(delayMs: number): void {
    if (!this.running || !this.learning) return;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      void this.probeOnce();
    }, delayMs);
  }

  private async probeOnce(): Promise<void> {
    if (!this.running || this.probing) return;
    const idleMs = this.learner.nextProbe(this.clock.wallNow());
    if (idleMs === null) {
      // Nothing to learn now; look again later (a re-check of the bound falls due after a day).
      this.schedule(600_000);
      return;
    }
    const controller = new AbortController();
    this.probing = controller;
    this.log.debug({ idleMs }, `probe connection: idle for ${sec(idleMs)}, then PINGREQ`);
    let result: IdleProbeResult;
    try {
      result = await this.options.probe(idleMs, controller.signal);
    } catch (err) {
      result = { outcome: 'failed', reason: (err as Error).message };
    } finally {
      if (this.probing === controller) this.probing = null;
    }
    if (!this.running) return;
    if (result.outcome === 'failed') {
      this.log.debug({ idleMs, reason: result.reason }, 'probe connection failed: nothing learned, trying again later');
      this.schedule(this.options.probeRetryMs ?? 30_000);
      return;
    }
    this.probes++;
    this.log.debug({ idleMs, result }, `probe connection: ${result.outcome} after ${sec(result.idleMs)} idle`);
    const change = this.learner.probed(result, this.clock.wallNow());
    this.apply(change, null);
    this.noteLearned();
    if (!change) {
      this.emitChange();
      this.save();
    }
    this.schedule(this.options.probePauseMs ?? 1000);
  }

  private newLearner(restored?: LearnedPath): IdleTimeoutLearner {
    return new IdleTimeoutLearner({ keepaliveMs: this.options.keepaliveMs, minIntervalMs: this.options.minIntervalMs, restored });
  }

  private async load(): Promise<LearnedPath | undefined> {
    const entry = (await this.store?.read(this.key))?.learned as LearnedPath | undefined;
    return entry?.version === 1 ? entry : undefined;
  }

  /** The whole entry for this path, written through the store (writes are serialized there). */
  private save(): void {
    if (!this.store) return;
    const stats = this.stats;
    this.store.write(this.key, {
      intervalMs: stats.intervalMs,
      timeoutMs: stats.timeoutMs,
      exact: stats.exact,
      keepaliveMs: this.options.keepaliveMs,
      updatedAt: new Date(this.clock.wallNow()).toISOString(),
      learned: this.learner.snapshot(),
    });
  }
}

function sec(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
