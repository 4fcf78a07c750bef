import type { EventEmitter } from 'node:events';

export type TransportErrorCode =
  | 'not-found' // no such serial device / host
  | 'busy' // port locked by another process
  | 'permission' // no access to the device
  | 'refused' // TCP connection refused
  | 'timeout' // open/connect took too long
  | 'closed' // the other end went away (unplug, pty closed, TCP reset/EOF)
  | 'invalid' // bad target or options
  | 'io'; // anything else from the OS

/** A transport failure with a code a program can act on and a message a person can read. */
export class TransportError extends Error {
  constructor(
    readonly code: TransportErrorCode,
    message: string,
    readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

/**
 * Received bytes handed over directly: `bytes[0, length)`, valid only during the call (the
 * buffer is reused for the next read, of this or another link): copy what must be kept.
 */
export type ByteReceiver = (bytes: Uint8Array, length: number) => void;

export interface TransportEvents {
  data: [Buffer];
  /** The link ended; `error` is null after close() was called, otherwise why it dropped. */
  close: [error: TransportError | null];
}

/**
 * A byte pipe to one board: a serial port or a serial-over-TCP bridge. One open() per
 * instance; a dropped link is reopened by making a new instance (see ReconnectingTransport).
 */
export interface Transport extends EventEmitter<TransportEvents> {
  /** For logs: "/dev/ttyACM0 @ 57600 baud" or "tcp://10.0.0.5:2000". */
  readonly description: string;
  readonly isOpen: boolean;
  open(): Promise<void>;
  /** Queues bytes; returns false if the transport is not open (the bytes are not sent). */
  write(bytes: Uint8Array): boolean;
  close(): Promise<void>;
  /**
   * Optional: received bytes go to `receiver` (see ByteReceiver) instead of 'data' events, with
   * no Buffer per read (tcp://: one read buffer for every link). null: back to 'data' events.
   */
  setReceiver?(receiver: ByteReceiver | null): void;
  /**
   * Optional: bytes written but not yet handed to the OS. 0 right after write() means the
   * bytes were taken synchronously and their buffer may be reused.
   */
  readonly pendingWriteBytes?: number;
}
