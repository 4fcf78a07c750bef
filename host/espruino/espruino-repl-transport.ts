/**
 * The host side of tether's Espruino framing (firmware/espruino/README.md): keepalive frames
 * share the serial line with the Espruino REPL.
 *
 * - Host -> board: each tether frame the session writes (`F0 0D ... F7`) goes out as one REPL
 *   line that the board runs without echo, `\x10tether.rx("F00D01...F7")\n` (hex is safe for
 *   the line editor: raw frame bytes would hit Ctrl-C, Enter, escape sequences). The wake byte
 *   (0x00) becomes an empty no-echo line, `\x10\n`, followed by a pause (`wakeGapMs`) so the
 *   board is awake before the next line: deep sleep loses the byte that wakes it, and maybe a
 *   few after it. Other bytes (Firmata) mean nothing to an Espruino board and are dropped.
 * - Board -> host: the module writes raw frames to the console; they are cut out of the stream
 *   and passed on as `data`; everything else (REPL prompt, echo, print() output, errors) is
 *   console text, passed to `onConsole`, never to the session. XOFF/XON from the board
 *   pause and resume writing.
 *
 * So the session (DeviceSession/DeviceLink) stays the same for Arduino and Espruino boards:
 * only this framing differs.
 */
import { EventEmitter } from 'node:events';
import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import type { Transport, TransportEvents } from '../transport/transport.ts';

const START_SYSEX = 0xf0;
const END_SYSEX = 0xf7;
const SYSEX_TETHER = 0x0d;
/** F0 + 64-byte body + F7. */
const MAX_FRAME = 66;
const XON = 0x11;
const XOFF = 0x13;
const WAKE_BYTE = 0x00;

export interface EspruinoReplTransportOptions {
  clock?: Clock;
  /** Pause after the wake line before anything else goes out (default 50 ms). */
  wakeGapMs?: number;
  /** Longest pause after an XOFF without XON before writing again (default 2000 ms). */
  xoffTimeoutMs?: number;
  /** The module's global name on the board (default 'tether'). */
  moduleName?: string;
  /** REPL text from the board (prompt, echo, print output, errors); never given to the session. */
  onConsole?: (text: string) => void;
}

/** The REPL line that hands one frame to the module: `\x10tether.rx("F00D...F7")\n`. */
export function replLineForFrame(frame: Uint8Array | readonly number[], moduleName = 'tether'): string {
  const hex = Array.from(frame, (b) => (b & 0xff).toString(16).padStart(2, '0').toUpperCase()).join('');
  return `\x10${moduleName}.rx("${hex}")\n`;
}

/**
 * Splits what an Espruino board sends into tether frames and console text (and XON/XOFF).
 * Pure: no I/O, no timers.
 */
export class EspruinoOutputSplitter {
  private frame: number[] | null = null;

  push(chunk: Uint8Array): { frames: number[]; text: number[]; flow: ('xon' | 'xoff')[] } {
    const out = { frames: [] as number[], text: [] as number[], flow: [] as ('xon' | 'xoff')[] };
    for (const byte of chunk) this.byte(byte & 0xff, out);
    return out;
  }

  private byte(b: number, out: { frames: number[]; text: number[]; flow: ('xon' | 'xoff')[] }): void {
    const frame = this.frame;
    if (frame === null) {
      if (b === START_SYSEX) this.frame = [b];
      else if (b === XON) out.flow.push('xon');
      else if (b === XOFF) out.flow.push('xoff');
      else out.text.push(b);
      return;
    }
    if (frame.length === 1 && b !== SYSEX_TETHER) {
      out.text.push(START_SYSEX);
      this.frame = null;
      this.byte(b, out);
      return;
    }
    if (b === END_SYSEX) {
      frame.push(b);
      out.frames.push(...frame);
      this.frame = null;
    } else if (b >= 0x80 || frame.length >= MAX_FRAME) {
      out.text.push(...frame);
      this.frame = null;
      this.byte(b, out);
    } else {
      frame.push(b);
    }
  }
}

interface Pending {
  bytes: Buffer;
  /** Hold further writes this long after this one (the wake gap). */
  holdMs: number;
}

export class EspruinoReplTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly description: string;
  private readonly clock: Clock;
  private readonly wakeGapMs: number;
  private readonly xoffTimeoutMs: number;
  private readonly moduleName: string;
  private readonly onConsole: ((text: string) => void) | undefined;
  private readonly splitter = new EspruinoOutputSplitter();
  private outFrame: number[] | null = null;
  private queue: Pending[] = [];
  private paused = false;
  private holdTimer: TimerHandle | undefined;
  private xoffTimer: TimerHandle | undefined;
  private closed = false;
  /** Bytes written that have no meaning on an Espruino board (Firmata), dropped. */
  droppedBytes = 0;

  constructor(
    private readonly inner: Transport,
    options: EspruinoReplTransportOptions = {},
  ) {
    super();
    this.clock = options.clock ?? systemClock;
    this.wakeGapMs = options.wakeGapMs ?? 50;
    this.xoffTimeoutMs = options.xoffTimeoutMs ?? 2000;
    this.moduleName = options.moduleName ?? 'tether';
    this.onConsole = options.onConsole;
    this.description = `${inner.description} (Espruino REPL framing)`;
    inner.on('data', (bytes) => this.receive(bytes));
    inner.on('close', (error) => {
      this.stopTimers();
      this.emit('close', error);
    });
  }

  get isOpen(): boolean {
    return this.inner.isOpen && !this.closed;
  }

  async open(): Promise<void> {
    await this.inner.open();
  }

  write(bytes: Uint8Array): boolean {
    if (!this.isOpen) return false;
    for (const byte of bytes) this.outByte(byte & 0xff);
    this.pump();
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopTimers();
    this.queue = [];
    await this.inner.close();
  }

  // ---- inside ---------------------------------------------------------------------------

  private outByte(b: number): void {
    const frame = this.outFrame;
    if (frame !== null) {
      if (b === END_SYSEX) {
        frame.push(b);
        this.outFrame = null;
        if (frame[1] === SYSEX_TETHER) this.enqueue(replLineForFrame(frame, this.moduleName), 0);
        else this.droppedBytes += frame.length;
        return;
      }
      if (b >= 0x80 || frame.length >= MAX_FRAME) {
        this.droppedBytes += frame.length;
        this.outFrame = null;
        this.outByte(b);
        return;
      }
      frame.push(b);
      return;
    }
    if (b === START_SYSEX) this.outFrame = [b];
    else if (b === WAKE_BYTE) this.enqueue('\x10\n', this.wakeGapMs);
    else this.droppedBytes++;
  }

  private enqueue(text: string, holdMs: number): void {
    this.queue.push({ bytes: Buffer.from(text, 'latin1'), holdMs });
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.paused && this.holdTimer === undefined && this.isOpen) {
      const item = this.queue.shift()!;
      this.inner.write(item.bytes);
      if (item.holdMs > 0) {
        this.holdTimer = this.clock.setTimeout(() => {
          this.holdTimer = undefined;
          this.pump();
        }, item.holdMs);
      }
    }
  }

  private receive(bytes: Buffer): void {
    const { frames, text, flow } = this.splitter.push(bytes);
    for (const f of flow) {
      if (f === 'xoff') this.pause();
      else this.resume();
    }
    if (text.length > 0) this.onConsole?.(Buffer.from(text).toString('latin1'));
    if (frames.length > 0) this.emit('data', Buffer.from(frames));
  }

  private pause(): void {
    this.paused = true;
    if (this.xoffTimer !== undefined) this.clock.clearTimeout(this.xoffTimer);
    // A lost XON must not stop the keepalive for good.
    this.xoffTimer = this.clock.setTimeout(() => this.resume(), this.xoffTimeoutMs);
  }

  private resume(): void {
    if (this.xoffTimer !== undefined) this.clock.clearTimeout(this.xoffTimer);
    this.xoffTimer = undefined;
    this.paused = false;
    this.pump();
  }

  private stopTimers(): void {
    if (this.holdTimer !== undefined) this.clock.clearTimeout(this.holdTimer);
    if (this.xoffTimer !== undefined) this.clock.clearTimeout(this.xoffTimer);
    this.holdTimer = undefined;
    this.xoffTimer = undefined;
  }
}
