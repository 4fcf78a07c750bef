/**
 * `tether flash --board espruino`: opens the board's serial port, uploads the keepalive module
 * (or another program) over the REPL with uploadToEspruino, save()s it and checks that the
 * board answers HELLO, then closes the port. Errors are EspruinoFlashError with one line a
 * person can act on.
 */
import { SerialTransport } from '../transport/serial-transport.ts';
import { TransportError } from '../transport/transport.ts';
import { UploadError, uploadToEspruino, type UploadOptions, type UploadProgress, type UploadResult } from './upload.ts';

/**
 * The rate a port is opened at when no baud rate is given: Espruino's default on its UARTs.
 * A board on its own USB port (Pico, Original, WiFi) ignores the rate.
 */
export const ESPRUINO_DEFAULT_BAUD = 9600;

/** Bytes per write when the upload is paced to a UART's rate. */
const UART_CHUNK_BYTES = 32;

export interface FlashEspruinoOptions extends Omit<UploadOptions, 'onProgress'> {
  path: string;
  /**
   * The board is on a UART at this rate (a USB-serial adapter on Serial1): the port is opened
   * at it and the upload is paced to it (32-byte writes, each taking the line's time), so that
   * when the board says XOFF only a few bytes are still on their way: its RX buffer has little
   * room left by then. Omitted: USB, opened at 9600 (ignored), sent as fast as the board's XOFF
   * and USB's own flow control allow.
   */
  baudRate?: number;
  /** The program to upload (the keepalive module's source). */
  source: string;
  onProgress?: (progress: UploadProgress) => void;
}

export class EspruinoFlashError extends Error {
  override readonly name = 'EspruinoFlashError';
  constructor(
    readonly code: UploadError['code'] | TransportError['code'],
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export async function flashEspruino(options: FlashEspruinoOptions): Promise<UploadResult> {
  const { path, baudRate: uartBaud, source, ...uploadOptions } = options;
  const baudRate = uartBaud ?? ESPRUINO_DEFAULT_BAUD;
  if (uartBaud !== undefined) {
    // 10 bits a byte on the line (start, 8 data, stop).
    uploadOptions.chunkBytes ??= UART_CHUNK_BYTES;
    uploadOptions.chunkDelayMs ??= Math.ceil((uploadOptions.chunkBytes * 10 * 1000) / uartBaud);
  }
  // No presence check: the upload is short and a vanished port shows up as a failed write.
  const port = new SerialTransport(path, { baudRate, presenceCheckMs: 0 });
  try {
    await port.open();
  } catch (err) {
    if (err instanceof TransportError) throw new EspruinoFlashError(err.code, oneLine(err.message), { cause: err });
    throw err;
  }
  try {
    return await uploadToEspruino(port, source, uploadOptions);
  } catch (err) {
    if (err instanceof UploadError) throw new EspruinoFlashError(err.code, describeUploadError(err, path, uartBaud), { cause: err });
    throw err;
  } finally {
    await port.close();
  }
}

function describeUploadError(err: UploadError, path: string, uartBaud: number | undefined): string {
  switch (err.code) {
    case 'no-repl': {
      const line = uartBaud === undefined ? 'on a UART give its baud rate (--baud)' : `is its UART at ${uartBaud} baud`;
      return `${err.message}; is ${path} an Espruino board (${line}) with nothing else using its console?`;
    }
    case 'code-error': {
      const complaint = err.consoleText
        .split(/\r?\n/)
        .map((line) => line.replace(/^[>:]+/, '').trim())
        .find((line) => /Uncaught|SyntaxError/.test(line));
      return `${err.message}${complaint ? `: ${complaint}` : ''}`;
    }
    case 'no-hello':
      return `${err.message}; the program was saved but does not speak tether's keepalive protocol`;
    default:
      return oneLine(err.message);
  }
}

function oneLine(text: string): string {
  return text.replace(/\s*\r?\n\s*/g, ' ').trim();
}
