import type { EmulatedUno } from './emulated-uno.ts';
import { PtyBridge } from './pty-bridge.ts';
import { createSerialUno, type SerialLineIn, type SerialUnoOptions } from './serial-uno.ts';

export { AUTO_RESET_QUIET_MS } from './serial-uno.ts';

export interface BoardOnPtyOptions extends SerialUnoOptions {
  ptyPath: string;
}

/** An emulated Uno whose serial port is a pty (made by socat): what `tether emulate --pty` runs. */
export class BoardOnPty {
  private constructor(
    readonly uno: EmulatedUno,
    readonly bridge: PtyBridge,
    private readonly lineIn: SerialLineIn,
  ) {
    uno.on('data', (bytes) => bridge.write(bytes));
    // A pty cannot tell when a client opens it: only the client's silence marks a fresh open.
    bridge.on('data', (bytes) => lineIn.write(bytes));
  }

  static async start(options: BoardOnPtyOptions): Promise<BoardOnPty> {
    const { uno, lineIn } = await createSerialUno(options);
    const board = new BoardOnPty(uno, new PtyBridge(options.ptyPath), lineIn);
    await board.bridge.open();
    uno.start();
    return board;
  }

  /** External resets done by the faked DTR auto-reset. */
  get autoResets(): number {
    return this.lineIn.autoResets;
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
