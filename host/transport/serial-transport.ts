import { EventEmitter } from 'node:events';
import { stat } from 'node:fs/promises';
import { SerialPort } from 'serialport';
import { silentLogger, type Logger } from '../log/logger.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import { clearHupcl } from './clear-hupcl.ts';
import { TransportError, type Transport, type TransportEvents } from './transport.ts';

export interface SerialTransportOptions {
  /** Default 57600, the firmware's rate. */
  baudRate?: number;
  logger?: Logger;
  /**
   * How often to check that the device path still exists (and is the same device) while
   * open; 0 turns it off. Default 1000. Needed because serialport misses a hangup that
   * happens before it starts waiting for input: it then re-reads 0 bytes forever instead
   * of reporting the disconnect.
   */
  presenceCheckMs?: number;
  clock?: Clock;
  /**
   * Default true: closing the port drops DTR (termios HUPCL), as a tty does by default, and an
   * Arduino Uno resets on the next open. false: HUPCL is cleared before each open (clearHupcl)
   * and serialport opens with hupcl: false, so DTR stays up across close and reopen and the
   * board is not reset again (the first open after plugging it in still resets it).
   */
  hupcl?: boolean;
}

export const DEFAULT_BAUD_RATE = 57600;
export const DEFAULT_PRESENCE_CHECK_MS = 1000;

type State = 'new' | 'opening' | 'open' | 'closing' | 'closed';

/** A late error from a port we already let go of must not crash the process as an unhandled 'error'. */
const ignoreLateError = () => {};

/**
 * A serial port (USB CDC, FTDI, CH340, or a pty) through the npm `serialport` package.
 * One open() per instance. An unplug ends it with close(TransportError 'closed').
 */
export class SerialTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly description: string;
  readonly baudRate: number;
  private readonly logger: Logger;
  private readonly presenceCheckMs: number;
  private readonly clock: Clock;
  private readonly hupcl: boolean;
  private presenceTimer: TimerHandle | null = null;
  /** The device number the path had at open; a different one later means another device. */
  private deviceId: number | null = null;
  private state: State = 'new';
  private port: SerialPort | null = null;
  private opening: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private closeRequested = false;

  constructor(
    readonly path: string,
    options: SerialTransportOptions = {},
  ) {
    super();
    const baudRate = options.baudRate ?? DEFAULT_BAUD_RATE;
    if (typeof path !== 'string' || path.trim() === '') {
      throw new TransportError('invalid', 'serial port path is empty');
    }
    if (!Number.isInteger(baudRate) || baudRate <= 0) {
      throw new TransportError('invalid', `baud rate for ${path} must be a positive integer, got ${baudRate}`);
    }
    const presenceCheckMs = options.presenceCheckMs ?? DEFAULT_PRESENCE_CHECK_MS;
    if (!Number.isFinite(presenceCheckMs) || presenceCheckMs < 0) {
      throw new TransportError('invalid', `presenceCheckMs must be a finite number >= 0, got ${presenceCheckMs}`);
    }
    this.presenceCheckMs = presenceCheckMs;
    this.clock = options.clock ?? systemClock;
    this.hupcl = options.hupcl ?? true;
    this.baudRate = baudRate;
    this.description = `${path} @ ${baudRate} baud`;
    this.logger = (options.logger ?? silentLogger).child({ transport: this.description });
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  open(): Promise<void> {
    if (this.state !== 'new') {
      return Promise.reject(new TransportError('invalid', `${this.description}: open() called twice; make a new transport to reopen`));
    }
    this.state = 'opening';
    this.opening = this.devicePresent().then(async (id) => {
      this.deviceId = id;
      if (!this.hupcl) {
        await clearHupcl(this.path).catch((err: Error) =>
          this.logger.warn({ err: err.message }, `could not keep DTR up on close (${err.message}): closing ${this.path} will reset an Uno`),
        );
      }
      return this.openPort();
    });
    return this.opening;
  }

  private openPort(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.closeRequested) {
        this.state = 'closed';
        reject(new TransportError('closed', `${this.description}: closed while opening`));
        return;
      }
      let port: SerialPort;
      try {
        port = new SerialPort({ path: this.path, baudRate: this.baudRate, autoOpen: false, hupcl: this.hupcl });
      } catch (err) {
        this.state = 'closed';
        reject(new TransportError('invalid', `cannot open ${this.path}: ${errorMessage(err)}`, err));
        return;
      }
      // Errors before open go to the open callback; this keeps any stray one from going unhandled.
      port.on('error', ignoreLateError);
      port.open((err) => {
        if (err) {
          this.state = 'closed';
          reject(serialErrorToTransportError(this.path, err));
          return;
        }
        if (this.closeRequested) {
          // close() was called while opening: release the port and report why open() failed.
          this.state = 'closed';
          this.releasePort(port).then(() =>
            reject(new TransportError('closed', `${this.description}: closed while opening`)),
          );
          return;
        }
        this.port = port;
        this.state = 'open';
        port.removeListener('error', ignoreLateError);
        port.on('data', this.onData);
        port.on('close', this.onPortClose);
        port.on('error', this.onPortError);
        this.schedulePresenceCheck();
        this.logger.debug({ path: this.path }, 'serial port open');
        resolve();
      });
    });
  }

  /** The path's device number, or null if it cannot be read (then only a vanished path counts). */
  private async devicePresent(): Promise<number | null> {
    try {
      return (await stat(this.path)).rdev;
    } catch {
      return null;
    }
  }

  private schedulePresenceCheck(): void {
    if (this.presenceCheckMs === 0 || this.state !== 'open') return;
    this.presenceTimer = this.clock.setTimeout(() => {
      this.presenceTimer = null;
      void this.checkPresence();
    }, this.presenceCheckMs);
  }

  private async checkPresence(): Promise<void> {
    const port = this.port;
    let gone: string | null = null;
    try {
      const { rdev } = await stat(this.path);
      if (this.deviceId !== null && rdev !== this.deviceId) gone = 'path now names another device';
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENODEV' || code === 'ENXIO') gone = 'device disappeared';
    }
    if (this.port !== port || this.state !== 'open' || !port) return; // closed meanwhile
    if (!gone) return this.schedulePresenceCheck();
    this.port = null;
    this.state = 'closed';
    // Closing also ends serialport's read loop on the hung-up fd.
    await this.releasePort(port);
    this.emitDropped(new TransportError('closed', `${this.path}: ${gone}`));
  }

  private stopPresenceCheck(): void {
    if (this.presenceTimer !== null) this.clock.clearTimeout(this.presenceTimer);
    this.presenceTimer = null;
  }

  write(bytes: Uint8Array): boolean {
    if (this.state !== 'open' || !this.port) return false;
    // Errors come back as the port's 'error' (or a disconnect 'close'); the callback keeps them off the stream default.
    // A copy: the write completes later and the caller may reuse its buffer.
    this.port.write(Buffer.from(bytes), (err) => {
      if (err) this.logger.debug({ err: err.message }, 'serial write failed');
    });
    return true;
  }

  /**
   * Sets the modem control lines (the Uno's auto-reset circuit hangs off DTR). Resolves
   * false when they cannot be set: not open, or a port without them (a pty).
   */
  setModemLines(lines: { dtr?: boolean; rts?: boolean }): Promise<boolean> {
    const port = this.port;
    if (this.state !== 'open' || !port) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => port.set(lines, (err) => resolve(!err)));
  }

  /** Discards what was received but not read yet (e.g. an application's output before a reset). */
  flushInput(): Promise<void> {
    const port = this.port;
    if (this.state !== 'open' || !port) return Promise.resolve();
    return new Promise<void>((resolve) => port.flush(() => resolve()));
  }

  close(): Promise<void> {
    // A second close() while one is running waits for the same end.
    this.closing ??= this.doClose().finally(() => {
      this.closing = null;
    });
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.state === 'opening') {
      this.closeRequested = true;
      await this.opening?.catch(() => {});
      return;
    }
    if (this.state !== 'open' || !this.port) return;
    const port = this.port;
    this.port = null;
    this.state = 'closing';
    await this.releasePort(port);
    this.state = 'closed';
    this.logger.debug({ path: this.path }, 'serial port closed');
    this.emit('close', null);
  }

  private readonly onData = (chunk: Buffer) => {
    this.emit('data', chunk);
  };

  /** serialport closed on its own: an unplug gives an error with `disconnected: true`. */
  private readonly onPortClose = (err?: Error & { disconnected?: boolean }) => {
    const port = this.port;
    if (!port || this.state !== 'open') return;
    this.port = null;
    this.state = 'closed';
    this.detach(port);
    const why = err?.disconnected ? 'device disconnected' : 'port closed unexpectedly';
    this.emitDropped(new TransportError('closed', `${this.path}: ${why}${err ? ` (${err.message})` : ''}`, err));
  };

  private readonly onPortError = (err: Error) => {
    const port = this.port;
    if (!port || this.state !== 'open') return;
    this.port = null;
    this.state = 'closed';
    this.detach(port);
    if (port.isOpen) port.close(() => {}); // the fd is of no more use; the callback swallows "not open"
    this.emitDropped(new TransportError('closed', `${this.path}: ${err.message}`, err));
  };

  /** Removes only our listeners (serialport keeps its own) and leaves the late-error guard on the dropped port. */
  private detach(port: SerialPort): void {
    this.stopPresenceCheck();
    port.off('data', this.onData);
    port.off('close', this.onPortClose);
    port.off('error', this.onPortError);
    if (!port.listeners('error').includes(ignoreLateError)) port.on('error', ignoreLateError);
  }

  private emitDropped(error: TransportError): void {
    this.logger.debug({ path: this.path, code: error.code, reason: error.message }, 'serial port dropped');
    this.emit('close', error);
  }

  /** Closes the port if it is open and removes our listeners, whatever happens. */
  private releasePort(port: SerialPort): Promise<void> {
    this.detach(port);
    return new Promise<void>((resolve) => {
      if (!port.isOpen) return resolve();
      port.close((err) => {
        if (err) this.logger.debug({ err: err.message }, 'serial close failed (port already gone)');
        resolve();
      });
    });
  }
}


function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * serialport's errors carry no errno code, only strerror text ("Error: No such file or
 * directory, cannot open /dev/ttyACM0", "Error Resource temporarily unavailable Cannot lock
 * port"), so both the code (when there is one) and the text are checked.
 */
export function serialErrorToTransportError(path: string, err: unknown): TransportError {
  const message = errorMessage(err);
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ENOENT' || code === 'ENODEV' || code === 'ENXIO' || /No such file or directory|No such device/i.test(message)) {
    return new TransportError('not-found', `serial port ${path} not found (is the board plugged in?): ${message}`, err);
  }
  if (code === 'EBUSY' || /Cannot lock port|Device or resource busy/i.test(message)) {
    return new TransportError('busy', `serial port ${path} is busy: another program has it open (${message})`, err);
  }
  if (code === 'EACCES' || code === 'EPERM' || /Permission denied|Operation not permitted/i.test(message)) {
    return new TransportError(
      'permission',
      `no permission to open serial port ${path} (on Linux, add the user to the dialout group): ${message}`,
      err,
    );
  }
  return new TransportError('io', `serial port ${path}: ${message}`, err);
}
