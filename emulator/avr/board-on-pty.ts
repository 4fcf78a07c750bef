import type { EmulatedUno } from './emulated-uno.ts';
import { PtyBridge } from './pty-bridge.ts';
import { createSerialUno, type SerialLineIn, type SerialUnoOptions } from './serial-uno.ts';

export { AUTO_RESET_QUIET_MS } from './serial-uno.ts';

export interface BoardOnPtyOptions extends SerialUnoOptions {
  ptyPath: string;
  /**
   * Models the USB-serial chip's flush timer: what the MCU transmits reaches the host only
   * when the timer runs out, as on a real Uno, whose ATmega16U2 (Arduino-usbserial) sends its
   * buffer to USB every ~4.1 ms (timer 0 overflow) and an FTDI chip every 16 ms (its default
   * latency timer). 0 (the default): each emulator slice's bytes go out at once.
   */
  usbFlushMs?: number;
}

/** An emulated Uno whose serial port is a pty (made by socat): what `tether emulate --pty` runs. */
export class BoardOnPty {
  private pendingTx: Buffer[] = [];
  private flushTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly uno: EmulatedUno,
    readonly bridge: PtyBridge,
    private readonly lineIn: SerialLineIn,
    usbFlushMs: number,
  ) {
    if (usbFlushMs > 0) {
      uno.on('data', (bytes) => {
        this.pendingTx.push(bytes);
        this.flushTimer ??= setTimeout(() => this.flushTx(), usbFlushMs);
      });
    } else {
      uno.on('data', (bytes) => bridge.write(bytes));
    }
    // A pty cannot tell when a client opens it: only the client's silence marks a fresh open.
    bridge.on('data', (bytes) => lineIn.write(bytes));
  }

  static async start(options: BoardOnPtyOptions): Promise<BoardOnPty> {
    const { uno, lineIn } = await createSerialUno(options);
    const board = new BoardOnPty(uno, new PtyBridge(options.ptyPath), lineIn, options.usbFlushMs ?? 0);
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
    this.dropTx(); // the USB chip loses power with the board
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
    this.dropTx();
    await this.bridge.close();
  }

  private flushTx(): void {
    this.flushTimer = undefined;
    const chunk = Buffer.concat(this.pendingTx);
    this.pendingTx = [];
    this.bridge.write(chunk);
  }

  private dropTx(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.pendingTx = [];
  }
}
