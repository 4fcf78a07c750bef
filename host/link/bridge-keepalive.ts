import { silentLogger, type Logger } from '../log/logger.ts';
import type { KeepalivePathStore } from '../mqtt/keepalive-path-store.ts';
import type { CutCause } from '../mqtt/idle-timeout-learner.ts';
import { rearm, type Clock, type TimerHandle, type WallClock } from '../time/clock.ts';
import { BridgeIdleLearner, type BridgeIntervalChange, type LearnedBridgePath } from './bridge-idle-learner.ts';

export interface BridgeKeepaliveSettings {
  /** Learn the path's idle timeout and keep the link's traffic below it (default true). */
  learn?: boolean;
  /** A fixed interval of keep-traffic PINGs (ms) instead of learning (capped at the ping interval). */
  intervalMs?: number;
  /** The shortest interval learning may choose (ms, default 2000). */
  minIntervalMs?: number;
  /** Where what was learned is kept (the gateway's keepalive-paths.json); none: not kept. */
  store?: KeepalivePathStore;
}

export interface BridgeKeepaliveOptions extends BridgeKeepaliveSettings {
  /** The tcp:// target: the path's name in the store and the log. */
  target: string;
  pingIntervalMs: number;
  clock: Clock;
  logger?: Logger;
  /** Silence on the link both ways now (ms since the last byte either way; Infinity while down). */
  idleMs(): number;
  /** Whether the board is `ready` (keep-traffic and learning only then). */
  ready(): boolean;
  /** Sends a PING now, outside the session's schedule (its PONG is contact as any other). */
  ping(): void;
  /** How long a PING may go unanswered before it is taken as lost (default 1500 ms). */
  answerMs?(): number;
  /** Closes the connection and opens a fresh one (the path forgot this one). */
  reopen(reason: string): void;
}

export interface BridgeKeepaliveStats {
  /** Keep-traffic after this long of silence (ms); the ping interval when nothing is to be kept awake. */
  intervalMs: number;
  /** Upper bound on the path's idle timeout (null: no cut stands). */
  timeoutMs: number | null;
  learned: boolean;
  /** Cuts of the link while the board was ready, by cause. */
  drops: Record<CutCause, number>;
}

/** How long a PING sent after a longer silence than ever proven safe may go unanswered before the path is taken to have forgotten the link. */
const DEFAULT_ANSWER_MS = 1500;

/**
 * The keep-traffic of one tcp:// link: a PING after the learned interval of silence (the
 * configured ping interval stays the detection bound: this only adds traffic), what the link
 * tells about the path (answered PINGs, cuts: closed by the path, or half-open) fed to a
 * BridgeIdleLearner, one log line when the interval drops below a cut and one when the search
 * settles, and what was learned stored per path so a restart starts from it.
 *
 * A PING sent after a longer silence than the path was ever proven to survive, and not
 * answered within the answer time, is taken as a cut at once: the link is reopened (healed)
 * rather than left for the session's bound. A PING at a proven idle age that goes unanswered
 * is only a miss: the session decides (its `lost` with the link open then counts as a cut).
 */
export class BridgeKeepalive {
  readonly key: string;
  private readonly options: BridgeKeepaliveOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private learner: BridgeIdleLearner;
  private timer: TimerHandle | null = null;
  /** The keep-traffic timer's last handle, run or cleared, for arm() to set again (see there). */
  private spentTimer: TimerHandle | null = null;
  private running = false;
  /**
   * PINGs sent on this connection and not answered yet, oldest first: their seq, idle age when
   * sent, and answer timer (unproven ones), three slots each in one array (a queue, slots
   * outHead to outTail): a PING a second per board, each answered within the second, made a
   * Map entry and an object (and a rehash) every time.
   */
  private readonly out: Array<number | TimerHandle | null> = [];
  private outHead = 0;
  private outTail = 0;
  private readonly drops: Record<CutCause, number> = { closed: 0, 'half-open': 0 };
  /** Made by the first onChange(). */
  private changeListeners: Set<(stats: BridgeKeepaliveStats) => void> | null = null;
  private wasLearned = true;

  constructor(options: BridgeKeepaliveOptions) {
    this.options = options;
    this.key = `bridge ${options.target}`;
    this.clock = options.clock;
    this.log = (options.logger ?? silentLogger).child({ component: 'bridge-keepalive' });
    this.learner = this.newLearner();
  }

  get learning(): boolean {
    return this.options.intervalMs === undefined && this.options.learn !== false;
  }

  get intervalMs(): number {
    if (this.options.intervalMs !== undefined) return Math.min(this.options.intervalMs, this.options.pingIntervalMs);
    return this.learning ? this.learner.intervalMs : this.options.pingIntervalMs;
  }

  get stats(): BridgeKeepaliveStats {
    return { intervalMs: this.intervalMs, timeoutMs: this.learner.timeoutMs, learned: this.learner.learned, drops: { ...this.drops } };
  }

  /**
   * stats' fields one by one, without its two objects (the keepalive facts read them for every
   * board every few seconds). `dropCounts` is the live record, not a copy: read, never keep.
   */
  get timeoutMs(): number | null {
    return this.learner.timeoutMs;
  }

  get learned(): boolean {
    return this.learner.learned;
  }

  get dropCounts(): Readonly<Record<CutCause, number>> {
    return this.drops;
  }

  onChange(listener: (stats: BridgeKeepaliveStats) => void): () => void {
    const listeners = (this.changeListeners ??= new Set());
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  /** Reads what was learned before on this path (if stored), then keeps the link's traffic. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const store = this.options.store;
    if (this.learning && store) {
      const stored = (await store.read(this.key))?.learned as LearnedBridgePath | undefined;
      if (!this.running) return;
      if (stored?.version === 1) {
        this.learner = this.newLearner(stored);
        const { timeoutMs } = this.learner;
        if (timeoutMs !== null) {
          this.log.info(
            { intervalMs: this.intervalMs, observedTimeoutMs: timeoutMs },
            `the path to ${this.options.target} cut idle links after ${sec(timeoutMs)} before: traffic every ${sec(this.intervalMs)} (learned, from ${store.file})`,
          );
        }
      }
    }
    this.wasLearned = this.learner.learned;
    this.arm();
  }

  stop(): void {
    this.running = false;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.forgetPings();
  }

  /** A PING went out (any: the session's or ours), `idleMs` after the last byte either way. */
  pingSent(seq: number, idleMs: number): void {
    if (!this.running || !this.options.ready() || !Number.isFinite(idleMs)) return;
    const safe = this.learner.safeMs ?? 0;
    // Longer than ever proven safe (plus the timer's slack): an answer proves more, silence is a cut.
    const unproven = this.learning && idleMs > safe + 250 && idleMs >= this.learner.minIntervalMs;
    // A seq sent again (after the u14 wrap) replaces the one still waiting, as a map by seq would.
    this.removeOutstanding(seq);
    const slot = this.outTail++;
    this.out[3 * slot] = seq;
    this.out[3 * slot + 1] = idleMs;
    this.out[3 * slot + 2] = unproven ? this.answerTimer(seq, idleMs) : null;
    this.arm();
  }

  /**
   * The deadline for the answer to an unproven PING. A method of its own: a closure made inside
   * pingSent() would give every call of it (every PING of every board) a context object for the
   * variables it captures, whether or not the closure is made.
   */
  private answerTimer(seq: number, idleMs: number): TimerHandle {
    const timer: TimerHandle = this.clock.setTimeout(() => {
      // Still waiting (not answered or forgotten)? Its timer says which one it is.
      const i = this.slotOfTimer(timer);
      if (i < 0) return;
      this.out[3 * i + 2] = null;
      this.unanswered(seq, idleMs);
    }, this.options.answerMs?.() ?? DEFAULT_ANSWER_MS);
    return timer;
  }

  /** A PONG came: the PING `seq` (and every older one, answered in order) survived. */
  pong(seq: number): void {
    const slot = this.slotOf(seq);
    if (slot >= 0) {
      const idleMs = this.out[3 * slot + 1] as number;
      // It and every older one: answered in order.
      for (let i = this.outHead; i <= slot; i++) this.clearSlot(i);
      this.outHead = slot + 1;
      this.compact();
      if (this.learning) {
        if (this.nothingToLearn(idleMs)) {
          // No cut stands and the age was proven before: survived() would change nothing (the
          // common case, every PONG of every board); only listeners would hear the same stats.
          if (this.changeListeners !== null && this.changeListeners.size > 0) this.emitChange();
        } else {
          this.apply(this.learner.survived(idleMs, this.wallNow()), null);
        }
      }
    }
    this.arm();
  }

  /** A survival at `idleMs` would teach the learner nothing: no cut stands, `idleMs` is proven, the search settled. */
  private nothingToLearn(idleMs: number): boolean {
    return this.wasLearned && this.learner.survivalChangesNothing(idleMs);
  }

  /** Any traffic from the board: the keep-traffic timer looks again from the new silence. */
  activity(): void {
    this.arm();
  }

  /**
   * The board went `lost` with the connection still open (the session's bound): if a PING was
   * unanswered, the path may have forgotten the link when it was sent; if none was out, the
   * board's BEATs stopped.
   */
  lostWithLinkOpen(): void {
    const first = this.firstIdle();
    this.forgetPings();
    if (first === null) {
      // No PING outstanding: the board sent its own heartbeat (BEATs) and it stopped arriving.
      // A cut all the same, but at no known idle age: it teaches the learner nothing.
      this.drops['half-open']++;
      this.emitChange();
      return;
    }
    this.noteCut(first, 'half-open');
  }

  /** The connection closed under a ready board, not by us: `idleMs` of silence before the close. */
  closed(idleMs: number, silentDeath: boolean): void {
    const first = this.firstIdle();
    this.forgetPings();
    // A kernel giving up on unacknowledged data (TCP_USER_TIMEOUT) is a silent death: the PING's idle age counts.
    if (silentDeath) {
      if (first !== null) this.noteCut(first, 'half-open');
      return;
    }
    this.noteCut(idleMs, 'closed');
  }

  /** The connection is gone (any reason): its PINGs will never be answered. */
  linkDown(): void {
    this.forgetPings();
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private unanswered(seq: number, idleMs: number): void {
    if (!this.running || !this.options.ready()) return;
    this.removeOutstanding(seq);
    this.forgetPings();
    this.noteCut(idleMs, 'half-open');
    this.options.reopen(`reopening: a PING sent after ${sec(idleMs)} idle went unanswered (the path forgot the connection)`);
  }

  private noteCut(idleMs: number, cause: CutCause): void {
    this.drops[cause]++;
    const change = this.learning ? this.learner.cut(idleMs, cause, this.wallNow()) : null;
    if (change) this.apply(change, { idleMs, cause });
    else this.emitChange();
  }

  private apply(change: BridgeIntervalChange | null, cut: { idleMs: number; cause: CutCause } | null): void {
    const learned = this.learner.learned;
    if (change) {
      const timeout = change.timeoutMs;
      const fields = { intervalMs: change.intervalMs, previousMs: change.previousMs, observedTimeoutMs: timeout, trial: change.trial, reason: change.reason };
      if (cut && learned && !this.wasLearned && change.trial === false && this.learner.safeMs !== null && change.previousMs > change.intervalMs && change.previousMs < this.options.pingIntervalMs) {
        // A step of the search was cut: the search settles at the last good value.
        this.log.info(
          fields,
          `learned the idle timeout of the path to ${this.options.target}: at most ${sec(timeout ?? cut.idleMs)} (a step to ${sec(cut.idleMs)} idle was cut); traffic every ${sec(change.intervalMs)} from now on`,
        );
      } else if (cut && change.intervalMs < change.previousMs) {
        const how = cut.cause === 'closed' ? 'closed by the path' : 'half-open: a PING went unanswered';
        this.log.warn(
          fields,
          `the link to ${this.options.target} was cut after ${sec(cut.idleMs)} idle (${how}): traffic every ${sec(change.intervalMs)} from now on (was ${sec(change.previousMs)}; PINGs every ${sec(this.options.pingIntervalMs)} still bound the detection)`,
        );
      } else if (learned && !this.wasLearned) {
        this.log.info(
          fields,
          `learned the idle timeout of the path to ${this.options.target}: ${timeout === null ? 'none' : `at most ${sec(timeout)}`}; traffic every ${sec(change.intervalMs)} (${change.reason})`,
        );
      } else {
        this.log.debug(fields, `${change.reason}: traffic every ${sec(change.intervalMs)} (was ${sec(change.previousMs)})`);
      }
      this.save();
    } else if (learned && !this.wasLearned) {
      const timeout = this.learner.timeoutMs;
      this.log.info(
        { intervalMs: this.intervalMs, observedTimeoutMs: timeout },
        `learned the idle timeout of the path to ${this.options.target}: ${timeout === null ? 'none' : `at most ${sec(timeout)}`}; traffic every ${sec(this.intervalMs)}`,
      );
      this.save();
    }
    this.wasLearned = learned;
    this.emitChange();
    this.arm();
  }

  /**
   * One timer: due when the link will have been silent for the interval. Moved on every PING and
   * PONG while the path needs keep-traffic: set again in the same handle (rearm(): one shared
   * timer heap entry per board, not a timer and a closure per PING and per PONG).
   */
  private arm(): void {
    const pending = this.timer;
    this.timer = null;
    const delay = this.keepTrafficDelay();
    if (delay === null) {
      if (pending !== null) {
        this.clock.clearTimeout(pending);
        this.spentTimer = pending;
      }
      return;
    }
    const reuse = pending ?? this.spentTimer;
    this.spentTimer = null;
    this.timer = rearm(this.clock, reuse ?? undefined, this.onDue, delay);
  }

  /** How long until keep-traffic is due from the silence now; null: none is needed. */
  private keepTrafficDelay(): number | null {
    if (!this.running || !this.options.ready()) return null;
    const interval = this.intervalMs;
    if (interval >= this.options.pingIntervalMs) return null; // the session's own PINGs are enough
    const idle = this.options.idleMs();
    if (!Number.isFinite(idle)) return null;
    return Math.max(0, interval - idle);
  }

  private readonly onDue = (): void => this.due();

  private due(): void {
    this.spentTimer = this.timer;
    this.timer = null;
    if (!this.running || !this.options.ready()) return;
    // A PING of ours still unanswered: its answer (or its timeout) decides first.
    if (this.outTail > this.outHead) return;
    const idle = this.options.idleMs();
    if (idle + 5 >= this.intervalMs) this.options.ping();
    else this.arm();
  }

  private forgetPings(): void {
    for (let i = this.outHead; i < this.outTail; i++) this.clearSlot(i);
    this.outHead = this.outTail = 0;
  }

  /** The slot of the outstanding PING `seq`, or -1. */
  private slotOf(seq: number): number {
    for (let i = this.outHead; i < this.outTail; i++) if (this.out[3 * i] === seq) return i;
    return -1;
  }

  private slotOfTimer(timer: TimerHandle | null): number {
    if (timer === null) return -1;
    for (let i = this.outHead; i < this.outTail; i++) if (this.out[3 * i + 2] === timer) return i;
    return -1;
  }

  private firstIdle(): number | null {
    return this.outTail > this.outHead ? (this.out[3 * this.outHead + 1] as number) : null;
  }

  private clearSlot(i: number): void {
    const timer = this.out[3 * i + 2] as TimerHandle | null | undefined;
    if (timer !== null && timer !== undefined) this.clock.clearTimeout(timer);
    this.out[3 * i + 2] = null;
  }

  /** Takes the PING `seq` out of the queue (if waiting), keeping the others in order. */
  private removeOutstanding(seq: number): void {
    const slot = this.slotOf(seq);
    if (slot < 0) return;
    this.clearSlot(slot);
    for (let i = slot; i + 1 < this.outTail; i++) {
      for (let k = 0; k < 3; k++) this.out[3 * i + k] = this.out[3 * i + 3 + k]!;
    }
    this.outTail--;
    this.out[3 * this.outTail + 2] = null;
    this.compact();
  }

  /** Empty: back to the start of the array (no growth while PINGs are answered). */
  private compact(): void {
    if (this.outHead === this.outTail) this.outHead = this.outTail = 0;
  }

  private emitChange(): void {
    const listeners = this.changeListeners;
    if (listeners === null || listeners.size === 0) return;
    const stats = this.stats;
    for (const l of listeners) l(stats);
  }

  private save(): void {
    const store = this.options.store;
    if (!store || !this.learning) return;
    store.write(this.key, {
      intervalMs: this.intervalMs,
      timeoutMs: this.learner.timeoutMs,
      pingIntervalMs: this.options.pingIntervalMs,
      updatedAt: new Date(this.wallNow()).toISOString(),
      learned: this.learner.snapshot(),
    });
  }

  private newLearner(restored?: LearnedBridgePath): BridgeIdleLearner {
    return new BridgeIdleLearner({ pingIntervalMs: this.options.pingIntervalMs, minIntervalMs: this.options.minIntervalMs, restored });
  }

  private wallNow(): number {
    return (this.clock as Partial<WallClock>).wallNow?.() ?? Date.now();
  }
}

function sec(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
