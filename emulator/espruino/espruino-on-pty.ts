import { PtyBridge } from '../avr/pty-bridge.ts';
import { EspruinoBoard, type EspruinoBoardOptions } from './espruino-board.ts';

export interface EspruinoOnPtyOptions extends Omit<EspruinoBoardOptions, 'clock'> {
  /** Where to create the serial port link. */
  ptyPath: string;
  /**
   * How the host's bytes reach the board. Without it: USB (as a Pico on its USB port): bytes
   * are taken as fast as the board's RX buffer has room and held back while it is full, never
   * lost, whatever baud rate the client set. With it: a UART at this baud rate (a USB-serial
   * adapter on Serial1): bytes arrive at baudRate/10 per second and are lost if the buffer is
   * full, so the host must stop on XOFF in time. A pty carries no baud rate, hence the option.
   */
  baudRate?: number;
}

/** How often the line moves queued host bytes into the board. */
const LINE_TICK_MS = 2;

/**
 * An emulated Espruino board (EspruinoBoard: the module in the stand-in globals, the REPL with
 * XON/XOFF) whose console is a pty, so serial programs (`tether flash --board espruino`, the
 * daemon, screen) reach it as they would a USB serial port. Real time: the system clock.
 *
 * Without `program` the board starts with empty flash: a bare REPL, as a new board.
 */
export class EspruinoOnPty {
  /** Host bytes on their way to the board's RX pin (or USB endpoint). */
  private pending: number[] = [];
  private lineTimer: NodeJS.Timeout | undefined;
  private lastTick = 0;
  /** UART only: bytes the line may deliver now (fractions carry over). */
  private credit = 0;

  private constructor(
    readonly board: EspruinoBoard,
    readonly bridge: PtyBridge,
    /** UART bytes per millisecond, or null for USB. */
    private readonly uartBytesPerMs: number | null,
  ) {
    board.on('data', (bytes) => bridge.write(bytes));
    bridge.on('data', (bytes) => {
      for (const b of bytes) this.pending.push(b);
      this.deliver();
    });
  }

  static async start(options: EspruinoOnPtyOptions): Promise<EspruinoOnPty> {
    const { ptyPath, baudRate, ...boardOptions } = options;
    if (baudRate !== undefined && !(Number.isInteger(baudRate) && baudRate > 0)) throw new RangeError(`baudRate must be a positive integer, not ${baudRate}`);
    const bridge = new PtyBridge(ptyPath);
    await bridge.open();
    // Powered after the pty exists, so the boot banner is not written to nowhere.
    return new EspruinoOnPty(new EspruinoBoard(boardOptions), bridge, baudRate === undefined ? null : baudRate / 10 / 1000);
  }

  get ptyPath(): string {
    return this.bridge.linkPath;
  }

  /** Pulls the USB cable: the pty disappears; the board (powered by the cable) keeps its flash. */
  async unplug(): Promise<void> {
    await this.bridge.close();
  }

  /** Plugs it back in: the same pty path, the board powered up again (a power-on reset). */
  async replug(): Promise<void> {
    await this.bridge.open();
    this.board.powerCycle();
  }

  /** Powers the board off and removes the pty. */
  async close(): Promise<void> {
    this.stopLine();
    this.pending = [];
    this.board.close();
    await this.bridge.close();
  }

  /** Moves what the line allows now into the board; ticks while bytes are waiting. */
  private deliver(): void {
    const now = performance.now();
    let n: number;
    if (this.uartBytesPerMs === null) {
      n = Math.min(this.pending.length, this.board.rxBufferFree);
    } else {
      if (this.lineTimer === undefined) this.credit = Math.max(this.credit, 1);
      else this.credit += (now - this.lastTick) * this.uartBytesPerMs;
      n = Math.min(this.pending.length, Math.floor(this.credit));
      this.credit -= n;
    }
    this.lastTick = now;
    if (n > 0) this.board.write(this.pending.splice(0, n));
    if (this.pending.length === 0) {
      this.stopLine();
      this.credit = 0;
    } else if (this.lineTimer === undefined) {
      this.lineTimer = setInterval(() => this.deliver(), LINE_TICK_MS);
    }
  }

  private stopLine(): void {
    clearInterval(this.lineTimer);
    this.lineTimer = undefined;
  }
}
