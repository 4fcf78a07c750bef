import { EventEmitter } from 'node:events';
import { isIPv6, Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net';
import { silentLogger, type Logger } from '../log/logger.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import { applyTcpKeepalive, type TcpKeepaliveSettings } from './tcp-keepalive.ts';
import { TransportError, type ByteReceiver, type Transport, type TransportErrorCode, type TransportEvents } from './transport.ts';

export interface TcpTransportOptions {
  /** Give up connecting after this long: TransportError 'timeout'. Default 5000. */
  connectTimeoutMs?: number;
  /**
   * Idle time before the first TCP keepalive probe. Default 5000: a bridge that lost power
   * sends no FIN, and Linux's own default (7200 s) would hide that for hours.
   */
  keepAliveInitialDelayMs?: number;
  /**
   * Full kernel keepalive (idle, interval, count) and TCP_USER_TIMEOUT, usually derived from
   * the session's bound (tcpKeepaliveForBound); replaces keepAliveInitialDelayMs when given.
   */
  keepalive?: TcpKeepaliveSettings;
  /** How long close() waits for queued bytes to leave before cutting the connection. Default 2000. */
  closeTimeoutMs?: number;
  logger?: Logger;
  clock?: Clock;
  /**
   * Makes the socket (default `new net.Socket(options)`). A hook for tests, which observe the
   * calls made on it, and for callers that need extra socket options. `options` carries the
   * shared read buffer (`onread`); a socket made without it delivers through 'data' instead.
   */
  createSocket?: (options: TcpSocketOptions) => Socket;
}

/** What TcpTransport makes its socket with: Node's constructor takes `onread` too (its types list it for connect only). */
export type TcpSocketOptions = SocketConstructorOpts & { onread?: OnReadOpts };

export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
export const DEFAULT_KEEPALIVE_INITIAL_DELAY_MS = 5000;

type State = 'new' | 'connecting' | 'open' | 'closing' | 'closed';

/** A late socket error after we let go must not become an unhandled 'error'. */
const ignoreLateError = () => {};

/**
 * One read buffer for every tcp:// link (`onread`): libuv reads into it and the link's
 * callback consumes the bytes synchronously (the frame splitter copies what it keeps), so
 * there is no Buffer per read and no stream 'data' event. 64 KiB: a read takes at most that.
 */
let sharedReadBuffer: Buffer | null = null;
function readBuffer(): Buffer {
  sharedReadBuffer ??= Buffer.allocUnsafeSlow(64 * 1024);
  return sharedReadBuffer;
}

/**
 * A serial-over-TCP bridge (ser2net raw mode, ESP-Link, a Wi-Fi serial module): raw bytes
 * over one TCP connection. One open() per instance.
 */
export class TcpTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly description: string;
  private readonly connectTimeoutMs: number;
  private readonly keepAliveInitialDelayMs: number;
  private readonly keepalive: TcpKeepaliveSettings | undefined;
  private readonly closeTimeoutMs: number;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly createSocket: (options: TcpSocketOptions) => Socket;
  private state: State = 'new';
  private socket: Socket | null = null;
  private opening: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private abortConnect: ((error: TransportError) => void) | null = null;
  /** The last socket error while open; the 'close' that follows reports it. */
  private lastError: (Error & { code?: string }) | null = null;
  /** Where received bytes go (setReceiver); null: 'data' events, each a copy. */
  private receiver: ByteReceiver | null = null;

  constructor(
    readonly host: string,
    readonly port: number,
    options: TcpTransportOptions = {},
  ) {
    super();
    if (typeof host !== 'string' || host === '') throw new TransportError('invalid', 'TCP host is empty');
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new TransportError('invalid', `TCP port must be an integer from 1 to 65535, got ${port}`);
    }
    this.connectTimeoutMs = positive('connectTimeoutMs', options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    this.keepAliveInitialDelayMs = nonNegative(
      'keepAliveInitialDelayMs',
      options.keepAliveInitialDelayMs ?? DEFAULT_KEEPALIVE_INITIAL_DELAY_MS,
    );
    this.keepalive = options.keepalive;
    this.closeTimeoutMs = nonNegative('closeTimeoutMs', options.closeTimeoutMs ?? 2000);
    this.description = `tcp://${isIPv6(host) ? `[${host}]` : host}:${port}`;
    this.logger = (options.logger ?? silentLogger).child({ transport: this.description });
    this.clock = options.clock ?? systemClock;
    this.createSocket = options.createSocket ?? ((socketOptions) => new Socket(socketOptions as SocketConstructorOpts));
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Bytes written and not yet handed to the kernel (0 when the last write went out at once). */
  get pendingWriteBytes(): number {
    return this.socket?.writableLength ?? 0;
  }

  setReceiver(receiver: ByteReceiver | null): void {
    this.receiver = receiver;
  }

  open(): Promise<void> {
    if (this.state !== 'new') {
      return Promise.reject(new TransportError('invalid', `${this.description}: open() called twice; make a new transport to reopen`));
    }
    this.state = 'connecting';
    this.opening = new Promise<void>((resolve, reject) => {
      const socket = this.createSocket({ onread: { buffer: readBuffer(), callback: this.onRead } });
      let timer: TimerHandle | null = null;
      const cleanup = () => {
        if (timer !== null) this.clock.clearTimeout(timer);
        timer = null;
        this.abortConnect = null;
        socket.off('connect', onConnect);
        socket.off('error', onConnectError);
        socket.off('close', onConnectClose);
      };
      const fail = (error: TransportError) => {
        cleanup();
        this.state = 'closed';
        socket.on('error', ignoreLateError);
        socket.destroy();
        reject(error);
      };
      const onConnect = () => {
        cleanup();
        // Keepalive finds a bridge that vanished without a FIN; no Nagle delay for small frames.
        if (this.keepalive) applyTcpKeepalive(socket, this.keepalive, this.logger);
        else socket.setKeepAlive(true, this.keepAliveInitialDelayMs);
        socket.setNoDelay(true);
        this.socket = socket;
        this.state = 'open';
        socket.on('data', this.onData);
        socket.on('error', this.onSocketError);
        socket.on('close', this.onSocketClose);
        this.logger.debug(this.keepalive ? { ...this.keepalive } : { keepAliveInitialDelayMs: this.keepAliveInitialDelayMs }, 'tcp connected');
        resolve();
      };
      const onConnectError = (err: Error) => fail(tcpErrorToTransportError(this.description, err));
      const onConnectClose = () => fail(new TransportError('closed', `${this.description}: connection closed while connecting`));
      this.abortConnect = fail;
      socket.on('connect', onConnect);
      socket.on('error', onConnectError);
      socket.on('close', onConnectClose);
      timer = this.clock.setTimeout(
        () => fail(new TransportError('timeout', `${this.description}: no connection within ${this.connectTimeoutMs} ms`)),
        this.connectTimeoutMs,
      );
      try {
        socket.connect({ host: this.host, port: this.port });
      } catch (err) {
        fail(tcpErrorToTransportError(this.description, err));
      }
    });
    return this.opening;
  }

  write(bytes: Uint8Array): boolean {
    if (this.state !== 'open' || !this.socket) return false;
    this.socket.write(bytes);
    return true;
  }

  close(): Promise<void> {
    // A second close() while one is running waits for the same end.
    this.closing ??= this.doClose().finally(() => {
      this.closing = null;
    });
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.state === 'connecting') {
      this.abortConnect?.(new TransportError('closed', `${this.description}: closed while connecting`));
      await this.opening?.catch(() => {});
      return;
    }
    if (this.state !== 'open' || !this.socket) return;
    const socket = this.socket;
    this.socket = null;
    this.state = 'closing';
    this.detach(socket);
    await new Promise<void>((resolve) => {
      // Let queued bytes leave (destroySoon ends, then destroys once flushed), but not forever.
      const timer = this.clock.setTimeout(() => socket.destroy(), this.closeTimeoutMs);
      socket.once('close', () => {
        this.clock.clearTimeout(timer);
        resolve();
      });
      socket.destroySoon();
    });
    this.state = 'closed';
    this.logger.debug({}, 'tcp closed');
    this.emit('close', null);
  }

  /** `onread`: `buffer` is the shared read buffer; its bytes are consumed before this returns. */
  private readonly onRead = (length: number, buffer: Uint8Array): boolean => {
    if (this.state !== 'open') return true; // let go of (closing): dropped, as a detached 'data' listener would
    const receiver = this.receiver;
    if (receiver !== null) receiver(buffer, length);
    else if (this.listenerCount('data') > 0) this.emit('data', Buffer.from(buffer.subarray(0, length)));
    return true;
  };

  /** A socket made without `onread` (a createSocket hook's own): its chunks are its own. */
  private readonly onData = (chunk: Buffer) => {
    const receiver = this.receiver;
    if (receiver !== null) receiver(chunk, chunk.length);
    else this.emit('data', chunk);
  };

  private readonly onSocketError = (err: Error & { code?: string }) => {
    // 'close' always follows an 'error'; report there, once.
    this.lastError = err;
  };

  private readonly onSocketClose = () => {
    const socket = this.socket;
    if (!socket || this.state !== 'open') return;
    this.socket = null;
    this.state = 'closed';
    this.detach(socket);
    const err = this.lastError;
    const why =
      err?.code === 'ECONNRESET'
        ? 'connection reset by the remote end'
        : err?.code === 'ETIMEDOUT'
          ? 'no TCP acknowledgement or keepalive answer in time (bridge unreachable: TCP_USER_TIMEOUT or keepalive expired)'
          : err
            ? err.message
            : 'remote end closed the connection';
    const error = new TransportError('closed', `${this.description}: ${why}`, err ?? undefined);
    this.logger.debug({ code: error.code, reason: error.message }, 'tcp dropped');
    this.emit('close', error);
  };

  private detach(socket: Socket): void {
    socket.off('data', this.onData);
    socket.off('error', this.onSocketError);
    socket.off('close', this.onSocketClose);
    socket.on('error', ignoreLateError);
  }
}

/** Maps a connect error to a code; Node's happy-eyeballs gives an AggregateError with the codes inside. */
export function tcpErrorToTransportError(description: string, err: unknown): TransportError {
  const e = err as (Error & { code?: string; errors?: Array<{ code?: string }> }) | null;
  const code = e?.code ?? e?.errors?.find((x) => x?.code)?.code;
  const message = e instanceof Error ? e.message || code || 'unknown error' : String(err);
  const map: Record<string, [TransportErrorCode, string]> = {
    ECONNREFUSED: ['refused', 'connection refused (is the bridge listening on that port?)'],
    ENOTFOUND: ['not-found', 'host not found'],
    EAI_NONAME: ['not-found', 'host not found'],
    EAI_AGAIN: ['not-found', 'host name lookup failed (DNS unavailable?)'],
    EAI_FAIL: ['not-found', 'host name lookup failed'],
    ETIMEDOUT: ['timeout', 'connection timed out'],
    EACCES: ['permission', 'connection not permitted'],
    EPERM: ['permission', 'connection not permitted'],
    ECONNRESET: ['closed', 'connection reset while connecting'],
  };
  const known = code ? map[code] : undefined;
  if (known) return new TransportError(known[0], `${description}: ${known[1]} (${message})`, err);
  return new TransportError('io', `${description}: ${message}`, err);
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new TransportError('invalid', `${name} must be a finite number > 0, got ${value}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new TransportError('invalid', `${name} must be a finite number >= 0, got ${value}`);
  return value;
}
