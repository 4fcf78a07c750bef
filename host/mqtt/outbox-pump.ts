/**
 * Moves entries from a DurableOutbox to the broker: oldest first, at most `inflight` publishes
 * awaiting their acknowledgement, an entry acked in the outbox (removed for good) only once its
 * publish() has resolved. Delivery is at-least-once: a publish that failed, or was cut off by a
 * disconnect, is sent again (the broker may then see it twice), never lost.
 *
 * Ordering. Within a topic, acks are applied in send order: an entry is acked only when every
 * earlier entry of its topic sent in the same round has succeeded. After a failure the pump
 * stops sending, lets what is in flight settle, and then resends from the oldest pending entry
 * (after 'up' if the connection is gone, else after a backoff). A round abandoned on 'down'
 * ignores the late results of its publishes. Hence, per topic, the last copy the broker receives
 * of each message comes in enqueue order, and the last message received is the newest one.
 *
 * QoS 0 entries are acked when publish() resolves, which for QoS 0 means written to the socket.
 */
import { silentLogger, type Logger } from '../log/logger.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import type { DurableOutbox, OutboxEntry } from './durable-outbox.ts';

/** The connection the pump publishes through (BrokerSession is one). */
export interface Publisher {
  readonly connected: boolean;
  /** Resolves when the broker acknowledged it (QoS 1) or it was written (QoS 0). */
  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void>;
  /** 'up' when (re)connected, 'down' when the connection is lost. */
  on(event: 'up' | 'down', listener: (...args: any[]) => void): unknown;
  off(event: 'up' | 'down', listener: (...args: any[]) => void): unknown;
}

/** What the pump needs of the outbox. */
export type PumpSource = Pick<DurableOutbox, 'pendingAfter' | 'ack' | 'size' | 'on' | 'off'>;

export interface OutboxPumpOptions {
  /** Most publishes awaiting acknowledgement at once (default 32). */
  inflight?: number;
  logger?: Logger;
  clock?: Clock;
  /** Wait before resending after a failure while still connected (default 500 ms), doubling. */
  retryDelayMs?: number;
  /** Cap of that wait (default 30 s). */
  maxRetryDelayMs?: number;
}

export interface OutboxPumpStats {
  /** publish() calls. */
  sent: number;
  /** Entries acked in the outbox. */
  acked: number;
  /** publish() calls for an entry that had been sent before. */
  retried: number;
}

interface InFlight {
  entry: OutboxEntry;
  round: number;
  state: 'waiting' | 'ok' | 'failed';
}

export class OutboxPump {
  private readonly window: number;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly counters: OutboxPumpStats = { sent: 0, acked: 0, retried: 0 };

  private running = false;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  /** Bumped when a round ends (all settled after a failure) or is abandoned (down). */
  private round = 0;
  /** A publish of this round failed: send nothing more until the round has settled. */
  private halted = false;
  /** Publishes of this round awaiting their result (each is in its topic's queue). */
  private inflight = 0;
  /**
   * Per topic, its in-flight entries in send order. Made with the first publish and dropped
   * with the last result, as is failedTopics with a failure: a fleet's pumps are idle nearly
   * always, and an empty Map is about 190 bytes.
   */
  private topicQueues: Map<string, InFlight[]> | undefined;
  /** Topics with a failure in this round: their later successes are not acked. */
  private failedTopics: Set<string> | undefined;
  /** Every pending id <= this was sent before: a resend. */
  private highestSent = 0;
  /**
   * Highest id sent in this round: every pending id up to it is in flight (a round ends, or is
   * abandoned, before anything is resent), so the next send is the first pending id above it.
   */
  private roundSentUpTo = 0;
  private failedRounds = 0;
  private retryTimer: TimerHandle | undefined;
  private fillScheduled = false;
  private idleWaiters: Array<() => void> = [];
  private flushWaiters: Array<() => void> = [];

  private readonly onUp = () => {
    this.logger.debug({ pending: this.outbox.size }, 'outbox pump: broker up');
    this.cancelRetry();
    this.failedRounds = 0;
    this.scheduleFill();
  };
  private readonly onDown = () => this.abandonRound();
  private readonly onEnqueue = () => this.scheduleFill();
  private readonly onOutboxChange = () => this.checkFlushed();

  constructor(
    private readonly outbox: PumpSource,
    private readonly publisher: Publisher,
    options: OutboxPumpOptions = {},
  ) {
    this.window = options.inflight ?? 32;
    if (!Number.isSafeInteger(this.window) || this.window < 1) {
      throw new RangeError(`inflight must be an integer >= 1, got ${this.window}`);
    }
    this.logger = (options.logger ?? silentLogger).child({ component: 'outbox-pump' });
    this.clock = options.clock ?? systemClock;
    this.retryDelayMs = options.retryDelayMs ?? 500;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 30_000;
  }

  get stats(): OutboxPumpStats {
    return { ...this.counters };
  }

  /** Publishes awaiting their result. */
  get inFlight(): number {
    return this.inflight;
  }

  /** Starts sending (at once if the publisher is connected, else on its next 'up'). */
  start(): void {
    if (this.running) return;
    if (!this.stopping) {
      this.publisher.on('up', this.onUp);
      this.publisher.on('down', this.onDown);
      this.outbox.on('enqueue', this.onEnqueue);
      this.outbox.on('ack', this.onOutboxChange);
      this.outbox.on('drop', this.onOutboxChange);
    }
    this.running = true;
    this.stopping = false;
    this.stopped = undefined;
    this.scheduleFill();
  }

  /**
   * Stops sending; resolves once the publishes in flight have settled (those that succeed are
   * still acked) or were abandoned by a disconnect. What is left stays in the outbox.
   */
  stop(): Promise<void> {
    if (this.stopped) return this.stopped;
    if (!this.running) return Promise.resolve();
    this.running = false;
    this.stopping = true;
    this.cancelRetry();
    const stopped = this.finishStop().finally(() => {
      if (this.stopped === stopped) this.stopped = undefined;
    });
    this.stopped = stopped;
    return stopped;
  }

  private async finishStop(): Promise<void> {
    if (this.inflight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (this.running) return; // started again meanwhile
    this.stopping = false;
    this.publisher.off('up', this.onUp);
    this.publisher.off('down', this.onDown);
    this.outbox.off('enqueue', this.onEnqueue);
    this.outbox.off('ack', this.onOutboxChange);
    this.outbox.off('drop', this.onOutboxChange);
  }

  /**
   * Calls `listener` once, the next time nothing is in flight after publishes settled (or the
   * round in flight was abandoned on 'down'). Returns how to stop waiting.
   */
  onceIdle(listener: () => void): () => void {
    this.idleWaiters.push(listener);
    return () => {
      const at = this.idleWaiters.indexOf(listener);
      if (at >= 0) this.idleWaiters.splice(at, 1);
    };
  }

  /** Resolves when the outbox is empty (at once if it is). */
  flushed(): Promise<void> {
    if (this.outbox.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.flushWaiters.push(resolve));
  }

  // ---- inside ----

  private scheduleFill(): void {
    if (this.fillScheduled) return;
    this.fillScheduled = true;
    queueMicrotask(() => {
      this.fillScheduled = false;
      this.fill();
    });
  }

  private fill(): void {
    if (!this.running || this.halted || !this.publisher.connected || this.retryTimer !== undefined) return;
    const free = this.window - this.inflight;
    if (free <= 0) return;
    const round = this.round;
    let budget = free;
    for (const entry of this.outbox.pendingAfter(this.roundSentUpTo, free)) {
      this.roundSentUpTo = entry.id;
      this.send(entry);
      // publish() may have reported a disconnect synchronously.
      if (--budget === 0 || round !== this.round || this.halted || !this.publisher.connected) break;
    }
  }

  private send(entry: OutboxEntry): void {
    const record: InFlight = { entry, round: this.round, state: 'waiting' };
    this.inflight++;
    const queues = (this.topicQueues ??= new Map());
    let queue = queues.get(entry.topic);
    if (!queue) queues.set(entry.topic, (queue = []));
    queue.push(record);
    this.counters.sent++;
    if (entry.id <= this.highestSent) this.counters.retried++;
    else this.highestSent = entry.id;
    let result: Promise<void>;
    try {
      result = this.publisher.publish(entry.topic, entry.payload, { qos: entry.qos, retain: entry.retain });
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      () => this.settle(record, true, undefined),
      (err: unknown) => this.settle(record, false, err),
    );
  }

  private settle(record: InFlight, ok: boolean, err: unknown): void {
    if (record.round !== this.round) return; // abandoned on 'down'; it will be (or was) resent
    record.state = ok ? 'ok' : 'failed';
    if (!ok && !this.halted) {
      this.halted = true;
      this.logger.warn(
        { err, topic: record.entry.topic, id: record.entry.id, pending: this.outbox.size },
        'outbox pump: publish failed; will resend',
      );
    }
    const topic = record.entry.topic;
    const queues = this.topicQueues!;
    const queue = queues.get(topic)!;
    while (queue.length > 0 && queue[0].state !== 'waiting') {
      const head = queue.shift()!;
      this.inflight--;
      if (head.state === 'failed') (this.failedTopics ??= new Set()).add(topic);
      else if (this.failedTopics === undefined || !this.failedTopics.has(topic)) {
        this.counters.acked++;
        this.failedRounds = 0;
        this.outbox.ack(head.entry.id);
        if (record.round !== this.round) return; // an 'ack' listener ended the round (abandoned it)
      }
    }
    if (queue.length === 0) {
      queues.delete(topic);
      if (queues.size === 0 && this.topicQueues === queues) this.topicQueues = undefined;
    }

    if (this.inflight === 0) {
      this.resolveIdle();
      if (this.halted) this.endFailedRound();
    }
    if (!this.halted) this.scheduleFill();
    this.checkFlushed();
  }

  /** Every publish of a failed round has settled: start over from the oldest pending entry. */
  private endFailedRound(): void {
    this.round++;
    this.roundSentUpTo = 0;
    this.halted = false;
    this.failedTopics = undefined;
    this.failedRounds++;
    if (!this.running) return;
    const delay = Math.min(this.maxRetryDelayMs, this.retryDelayMs * 2 ** Math.min(this.failedRounds - 1, 30));
    this.cancelRetry();
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.fill();
    }, delay);
  }

  /** The connection is gone: what is in flight will be resent after 'up'. */
  private abandonRound(): void {
    this.logger.debug({ inflight: this.inflight }, 'outbox pump: broker down');
    this.roundSentUpTo = 0; // what is pending is resent from the oldest
    if (this.inflight === 0 && !this.halted) return;
    this.round++;
    this.halted = false;
    this.inflight = 0;
    this.topicQueues = undefined;
    this.failedTopics = undefined;
    this.resolveIdle();
  }

  private cancelRetry(): void {
    if (this.retryTimer === undefined) return;
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private resolveIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private checkFlushed(): void {
    if (this.flushWaiters.length === 0 || this.outbox.size !== 0) return;
    const waiters = this.flushWaiters;
    this.flushWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
