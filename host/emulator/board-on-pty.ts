import { readFile } from 'node:fs/promises';
import { EmulatedUno, type EmulatedUnoOptions } from './emulated-uno.ts';
import { PtyBridge } from './pty-bridge.ts';

export interface BoardOnPtyOptions extends Omit<EmulatedUnoOptions, 'firmwareHex' | 'bootloaderHex'> {
  hexPath: string;
  bootloaderPath?: string;
  ptyPath: string;
}

/** An emulated Uno whose serial port is a pty: what `tether emulate` runs. */
export class BoardOnPty {
  private constructor(
    readonly uno: EmulatedUno,
    readonly bridge: PtyBridge,
  ) {
    uno.on('data', (bytes) => bridge.write(bytes));
    bridge.on('data', (bytes) => uno.write(bytes));
  }

  static async start(options: BoardOnPtyOptions): Promise<BoardOnPty> {
    const firmwareHex = await readHex(options.hexPath, 'firmware');
    const bootloaderHex = options.bootloaderPath ? await readHex(options.bootloaderPath, 'bootloader') : undefined;
    const uno = new EmulatedUno({ ...options, firmwareHex, bootloaderHex });
    const board = new BoardOnPty(uno, new PtyBridge(options.ptyPath));
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
