import { readFile } from 'node:fs/promises';
import { EmulatedUno, type EmulatedUnoOptions } from './emulated-uno.ts';
import { PtyBridge } from './pty-bridge.ts';

export interface BoardOnPtyOptions extends Omit<EmulatedUnoOptions, 'firmwareHex' | 'bootloaderHex'> {
  hexPath: string;
  bootloaderPath?: string;
  ptyPath: string;
  /**
   * Fakes the Uno's DTR auto-reset, which a pty cannot carry (it has no modem lines):
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

/** An emulated Uno whose serial port is a pty: what `tether emulate` runs. */
export class BoardOnPty {
  /** When the client last sent bytes (performance.now()); -Infinity before the first. */
  private lastClientBytesAt = -Infinity;
  /** External resets done by the faked DTR auto-reset. */
  autoResets = 0;

  private constructor(
    readonly uno: EmulatedUno,
    readonly bridge: PtyBridge,
    autoReset: boolean,
  ) {
    uno.on('data', (bytes) => bridge.write(bytes));
    bridge.on('data', (bytes) => {
      const now = performance.now();
      if (autoReset && bytes[0] === STK_GET_SYNC && now - this.lastClientBytesAt >= AUTO_RESET_QUIET_MS) {
        // What DTR would have done when the client opened the port. The GET_SYNC that
        // triggered it is lost, as bytes sent during a real reset are; programmers retry.
        this.autoResets++;
        uno.reset();
      }
      this.lastClientBytesAt = now;
      uno.write(bytes);
    });
  }

  static async start(options: BoardOnPtyOptions): Promise<BoardOnPty> {
    const firmwareHex = await readHex(options.hexPath, 'firmware');
    const bootloaderHex = options.bootloaderPath ? await readHex(options.bootloaderPath, 'bootloader') : undefined;
    const uno = new EmulatedUno({ ...options, firmwareHex, bootloaderHex });
    const board = new BoardOnPty(uno, new PtyBridge(options.ptyPath), options.autoReset ?? bootloaderHex !== undefined);
    await board.bridge.open();
    uno.start();
    return board;
  }

  /** Pulls the USB cable: the pty disappears and the board loses power. */
  async unplug(): Promise<void> {
    this.uno.stop();
    await this.bridge.close();
  }

  /** Plugs it back in: same pty path, the board powers up again. */
  async replug(): Promise<void> {
    this.uno.powerCycle();
    await this.bridge.open();
    this.uno.start();
  }

  async close(): Promise<void> {
    this.uno.stop();
    await this.bridge.close();
  }
}

async function readHex(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${what} image not found: ${path}` : `cannot read ${what} image ${path}: ${(err as Error).message}`);
  }
}
