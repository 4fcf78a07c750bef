import { EventEmitter } from 'node:events';
import { silentLogger, type Logger } from '../log/logger.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import { ExponentialBackoff, type BackoffOptions } from './backoff.ts';
import { TransportError, type ByteReceiver, type Transport } from './transport.ts';

export interface ReconnectingTransportOptions {
  backoff?: BackoffOptions;
  clock?: Clock;
  logger?: Logger;
  /**
   * When the backoff starts again from its first delay: 'open' (default) as soon as a
   * transport opens; 'healthy' only when the owner calls markHealthy() (e.g. once the board
   * answered), so a path that accepts connections but carries nothing is not retried in a
   * tight loop.
   */
  resetBackoffOn?: 'open' | 'healthy';
}

export interface RetryInfo {
  /** 1 for the first retry of an outage. */
  attempt: number;
  delayMs: number;
  /** Why the previous try failed (or why the link dropped). */
  error: TransportError;
}

export interface ReconnectingTransportEvents {
  /** A transport opened (again). */
  up: [];
  /** The link went down, or the first open failed: once per outage, with the first reason. */
  down: [error: TransportError];
  /** A try is scheduled: once per failed attempt. */
  retry: [info: RetryInfo];
  data: [Buffer];
}

type State = 'idle' | 'connecting' | 'up' | 'waiting' | 'stopping';

/**
 * Keeps a link to one board up for as long as it takes: opens a fresh Transport from the
 * factory, and after a failed open or a drop waits (exponential backoff with jitter) and
 * tries again, until stop(). It never queues writes: while down, write() returns false and
 * the caller decides what to do with the bytes.
 *
 * Listeners of this emitter that throw are logged, not propagated: they run inside transport
 * and timer callbacks, where a throw would break the retry loop or crash the process.
 */
export class ReconnectingTransport extends EventEmitter<ReconnectingTransportEvents> {
  private readonly backoff: ExponentialBackoff;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private state: State = 'idle';
  private current: Transport | null = null;
  private detachCurrent: (() => void) | null = null;
  private pendingOpen: Promise<void> | null = null;
  private timer: TimerHandle | null = null;
  private inOutage = false;
  /** Clock time of the last byte in or out on the current connection (or when it opened). */
  private lastActivityAt = 0;
  /** Bumped by stop(): callbacks from an earlier run see a different number and do nothing. */
  private generation = 0;
  private target = 'unknown target';
  private stopping: Promise<void> | null = null;
  private readonly resetBackoffOn: 'open' | 'healthy';
  /** Transports closed by recycle() and still closing: stop() waits for them (made on the first recycle). */
  private recycling: Set<Promise<void>> | null = null;
  /** Where received bytes go besides 'data' events (setReceiver). */
  private receiver: ByteReceiver | null = null;

  constructor(
    private readonly factory: () => Transport,
    options: ReconnectingTransportOptions = {},
  ) {
    super();
    this.backoff = new ExponentialBackoff(options.backoff);
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.resetBackoffOn = options.resetBackoffOn ?? 'open';
  }

  get isUp(): boolean {
    return this.state === 'up';
  }

  /** Silence on the current (or last) connection both ways: ms since its last byte in or out, or since it opened. */
  get silenceMs(): number {
    return this.clock.now() - this.lastActivityAt;
  }

  /** Starts connecting; does nothing if already started. Failures are reported through events, never thrown. */
  start(): void {
    if (this.state !== 'idle') return;
    this.inOutage = false;
    this.backoff.reset();
    this.connect();
  }

  /**
   * Received bytes go straight to `receiver` (valid only during the call: see ByteReceiver),
   * from a transport that offers it without a Buffer or an event per read; 'data' events
   * still go to any 'data' listeners. A receiver that throws is logged, as a listener is.
   */
  setReceiver(receiver: ByteReceiver | null): void {
    this.receiver = receiver;
  }

  /** Bytes written on the current link and not yet handed to the OS (Infinity: not known, or down). */
  get pendingWriteBytes(): number {
    return this.current?.pendingWriteBytes ?? Infinity;
  }

  /** Sends bytes on the current link; false while down (the bytes are not sent). */
  write(bytes: Uint8Array): boolean {
    if (this.state !== 'up' || !this.current) return false;
    this.lastActivityAt = this.clock.now();
    return this.current.write(bytes);
  }

  /**
   * Closes the current transport although it looks open (the peer stopped answering: a
   * middlebox forgot or blackholes the connection) and reconnects with backoff, reporting
   * `down` with `reason` as for any drop. Does nothing unless up.
   */
  recycle(reason: string): void {
    if (this.state !== 'up' || !this.current) return;
    const transport = this.current;
    this.dropCurrent();
    const closing = transport
      .close()
      .catch((err: unknown) => this.logger.debug({ target: this.target, err }, 'error closing a recycled transport'))
      .finally(() => this.recycling?.delete(closing));
    (this.recycling ??= new Set()).add(closing);
    this.failed(new TransportError('closed', `${transport.description}: ${reason}`), 'recycle');
  }

  /** The link proved itself (with resetBackoffOn 'healthy'): the next outage starts from the first delay. */
  markHealthy(): void {
    this.backoff.reset();
  }

  /**
   * Cancels a pending retry and closes the current transport (also one still opening).
   * Resolves once nothing is left running; start() may be called again afterwards.
   */
  stop(): Promise<void> {
    if (this.state === 'idle') return Promise.resolve();
    this.stopping ??= this.doStop().finally(() => {
      this.stopping = null;
    });
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.generation++;
    this.state = 'stopping';
    if (this.timer !== null) {
      this.clock.clearTimeout(this.timer);
      this.timer = null;
    }
    const transport = this.current;
    const opening = this.pendingOpen;
    this.current = null;
    this.pendingOpen = null;
    this.detachCurrent?.();
    this.detachCurrent = null;
    if (transport) {
      try {
        await transport.close();
      } catch (err) {
        this.logger.warn({ target: this.target, err }, 'error closing transport on stop');
      }
    }
    // An open in flight settles on its own; its handler sees the new generation and closes
    // what it opened. Wait for that so stop() really leaves nothing behind.
    if (opening) await opening;
    if (this.recycling) await Promise.all([...this.recycling]);
    this.state = 'idle';
    this.logger.info({ target: this.target }, 'link stopped');
  }

  private connect(): void {
    const generation = this.generation;
    this.state = 'connecting';
    let transport: Transport;
    try {
      transport = this.factory();
    } catch (err) {
      this.failed(toTransportError(err), 'open');
      return;
    }
    this.target = transport.description;
    this.current = transport;

    // A close seen while open() is pending is kept for the open handler to judge.
    let closedEarly: TransportError | null = null;
    const onData = (chunk: Buffer) => {
      if (this.current === transport && this.state === 'up') {
        this.lastActivityAt = this.clock.now();
        if (this.receiver !== null) this.receive(chunk, chunk.length);
        this.safeEmit('data', chunk);
      }
    };
    // A transport that hands bytes over directly: no event and no Buffer per read on this path.
    const onBytes = (bytes: Uint8Array, length: number) => {
      if (this.current !== transport || this.state !== 'up') return;
      this.lastActivityAt = this.clock.now();
      if (this.receiver !== null) this.receive(bytes, length);
      // The bytes are only lent: 'data' listeners get a copy of their own.
      if (this.listenerCount('data') > 0) this.safeEmit('data', Buffer.from(bytes.subarray(0, length)));
    };
    const onClose = (error: TransportError | null) => {
      if (this.current !== transport) return;
      const reason = error ?? new TransportError('closed', `${transport.description}: closed unexpectedly`);
      if (this.state === 'connecting') {
        closedEarly = reason;
        return;
      }
      this.dropCurrent();
      this.failed(reason, 'drop');
    };
    const direct = typeof transport.setReceiver === 'function';
    if (direct) transport.setReceiver!(onBytes);
    else transport.on('data', onData);
    transport.on('close', onClose);
    this.detachCurrent = () => {
      if (direct) transport.setReceiver!(null);
      else transport.off('data', onData);
      transport.off('close', onClose);
    };

    let opened: Promise<void>;
    try {
      opened = transport.open();
    } catch (err) {
      // A Transport should reject, not throw; treat both the same.
      opened = Promise.reject(err);
    }
    this.pendingOpen = opened.then(
      () => {
        if (generation !== this.generation || this.current !== transport) {
          // stop() came first: close what just opened, quietly.
          return transport.close().catch(() => {});
        }
        if (closedEarly) {
          this.dropCurrent();
          this.failed(closedEarly, 'drop');
          return;
        }
        this.pendingOpen = null;
        const attempts = this.backoff.attempt;
        if (this.resetBackoffOn === 'open') this.backoff.reset();
        this.inOutage = false;
        this.state = 'up';
        this.lastActivityAt = this.clock.now();
        this.logger.info({ target: this.target, attempts }, 'link up');
        this.safeEmit('up');
      },
      (err: unknown) => {
        if (generation !== this.generation || this.current !== transport) return;
        this.dropCurrent();
        this.failed(toTransportError(err), 'open');
      },
    );
  }

  private dropCurrent(): void {
    this.detachCurrent?.();
    this.detachCurrent = null;
    this.current = null;
    this.pendingOpen = null;
  }

  /** Reports the failure and schedules the next try. */
  private failed(error: TransportError, phase: 'open' | 'drop' | 'recycle'): void {
    const generation = this.generation;
    if (!this.inOutage) {
      this.inOutage = true;
      this.state = 'waiting';
      this.safeEmit('down', error);
      // A 'down' listener may have called stop().
      if (generation !== this.generation) return;
    }
    this.state = 'waiting';
    const delayMs = this.backoff.next();
    const attempt = this.backoff.attempt;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      if (generation === this.generation) this.connect();
    }, delayMs);
    // Attempts 1, 2, 4, 8, ... at WARN, the rest at DEBUG: a bridge gone for a day retried
    // every second must not write 86,400 lines.
    const level = (attempt & (attempt - 1)) === 0 ? 'warn' : 'debug';
    this.logger[level](
      { target: this.target, attempt, delayMs, code: error.code, reason: error.message, phase },
      `link down, retrying in ${delayMs} ms`,
    );
    this.safeEmit('retry', { attempt, delayMs, error });
  }

  private receive(bytes: Uint8Array, length: number): void {
    try {
      this.receiver!(bytes, length);
    } catch (err) {
      this.logger.error({ target: this.target, err }, 'the byte receiver threw');
    }
  }

  private safeEmit<K extends keyof ReconnectingTransportEvents>(event: K, ...args: ReconnectingTransportEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: ReconnectingTransportEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.logger.error({ target: this.target, event, err }, `a '${event}' listener threw`);
    }
  }
}

function toTransportError(err: unknown): TransportError {
  if (err instanceof TransportError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new TransportError('io', message, err);
}
