import { readFile } from 'node:fs/promises';
import { EmulatedUno, type EmulatedUnoOptions } from './emulated-uno.ts';

/** What BoardOnPty and BoardOnTcp share: images from files, and the faked DTR auto-reset. */
export interface SerialUnoOptions extends Omit<EmulatedUnoOptions, 'firmwareHex' | 'bootloaderHex'> {
  hexPath: string;
  bootloaderPath?: string;
  /**
   * Fakes the Uno's DTR auto-reset, which neither a pty nor a TCP byte stream carries:
   * when a client starts talking STK500 (a GET_SYNC, 0x30, as avrdude and `tether flash`
   * send right after opening the port) after at least AUTO_RESET_QUIET_MS without sending
   * anything, the MCU gets an external reset first, so the bootloader answers. Default: on
   * when a bootloader is given, off otherwise.
   */
  autoReset?: boolean;
}

/** How long a client must have been silent for its GET_SYNC to count as a fresh open. */
export const AUTO_RESET_QUIET_MS = 1000;
const STK_GET_SYNC = 0x30;

/**
 * The serial line into an emulated Uno as a USB-serial chip with DTR wired to RESET makes
 * it: bytes from a client go to the MCU's RX pin, and a client that opens the port and
 * starts a bootloader sync resets the board first.
 */
export class SerialLineIn {
  /** When the client last sent bytes (performance.now()); -Infinity before the first. */
  private lastClientBytesAt = -Infinity;
  /** External resets done by the faked DTR auto-reset. */
  autoResets = 0;

  constructor(
    private readonly uno: EmulatedUno,
    readonly autoReset: boolean,
  ) {}

  /** A client opened the port anew (where the transport can tell, as TCP can): it counts as silent so far. */
  opened(): void {
    this.lastClientBytesAt = -Infinity;
  }

  /** Bytes a client sent. */
  write(bytes: Uint8Array): void {
    const now = performance.now();
    if (this.autoReset && bytes[0] === STK_GET_SYNC && now - this.lastClientBytesAt >= AUTO_RESET_QUIET_MS) {
      // What DTR would have done when the client opened the port. The GET_SYNC that
      // triggered it is lost, as bytes sent during a real reset are; programmers retry.
      this.autoResets++;
      this.uno.reset();
    }
    this.lastClientBytesAt = now;
    this.uno.write(bytes);
  }
}

/** Reads the images and builds the (not yet started) Uno and its serial line. */
export async function createSerialUno(options: SerialUnoOptions): Promise<{ uno: EmulatedUno; lineIn: SerialLineIn }> {
  const firmwareHex = await readHex(options.hexPath, 'firmware');
  const bootloaderHex = options.bootloaderPath ? await readHex(options.bootloaderPath, 'bootloader') : undefined;
  const uno = new EmulatedUno({ ...options, firmwareHex, bootloaderHex });
  return { uno, lineIn: new SerialLineIn(uno, options.autoReset ?? bootloaderHex !== undefined) };
}

async function readHex(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${what} image not found: ${path}` : `cannot read ${what} image ${path}: ${(err as Error).message}`);
  }
}
