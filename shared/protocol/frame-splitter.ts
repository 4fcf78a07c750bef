/**
 * Extracts tether frames (`F0 0D ... F7`) from a serial byte stream that also carries
 * ordinary Firmata traffic. Pure: no I/O, no timers.
 *
 * - Tether frames come out as 'message' events (or 'error' events with the raw bytes).
 * - Every other byte (Firmata commands, other sysex frames, stray bytes) comes out unchanged
 *   and in order as 'firmata' events, consecutive bytes coalesced within one push().
 * - A tether frame cut short by F0 or any other command byte (0x80-0xFF), as the Firmata
 *   parser restarts on every command byte, is reported as a 'not-sysex' error; the command
 *   byte is then processed normally.
 * - A body over MAX_BODY bytes is reported as 'too-long' as soon as it overflows; the rest of
 *   the frame is dropped up to the next F7 (consumed) or command byte (processed normally).
 * - Memory is bounded: at most 1 + MAX_BODY + 1 bytes are held between pushes.
 */
import { END_SYSEX, MAX_BODY, START_SYSEX, SYSEX_TETHER } from './constants.ts';
import { decodeBody, readPongBody, type DecodeOptions, type PongFields } from './decode.ts';
import { ProtocolError } from './errors.ts';
import type { Message } from './messages.ts';

export type SplitterEvent =
  | { kind: 'message'; message: Message }
  | { kind: 'error'; error: ProtocolError; raw: Uint8Array }
  | { kind: 'firmata'; bytes: Uint8Array };

export type FrameSplitterOptions = DecodeOptions;

/**
 * Where pushTo() hands what it finds, in stream order, without an event object or array per
 * chunk. `pong`, if given, takes valid PONGs instead of `message` (no message object; the
 * fields object is reused: read it during the call).
 */
export interface SplitterSink {
  message(message: Message): void;
  pong?(fields: PongFields): void;
  /** Coalesced Firmata bytes (a fresh array the sink may keep). */
  firmata(bytes: Uint8Array): void;
  error(error: ProtocolError, raw: Uint8Array): void;
}

const State = {
  /** Outside any tether frame: bytes are Firmata. */
  Idle: 0,
  /** Saw F0; the next byte tells whether this is a tether frame. */
  AfterStart: 1,
  /** Inside a tether frame: collecting the body. */
  InFrame: 2,
  /** The frame overflowed MAX_BODY: dropping bytes until F7 or a command byte. */
  Discarding: 3,
} as const;
type State = (typeof State)[keyof typeof State];

function hex(b: number): string {
  return `0x${b.toString(16).padStart(2, '0')}`;
}

export class FrameSplitter {
  private state: State = State.Idle;
  /** F0 followed by the body collected so far; one spare byte for the overflowing byte. */
  private readonly frame = new Uint8Array(1 + MAX_BODY + 1);
  private frameLength = 0;
  private readonly options: FrameSplitterOptions;

  private events: SplitterEvent[] = [];
  private firmata: number[] = [];
  /** Where events go during pushTo(); null: collected into `events` for push(). */
  private sink: SplitterSink | null = null;
  private readonly pongFields: PongFields = { beat: false, seq: 0, uptimeMs: 0, bootId: 0, flags: 0, leaseRemainingMs: 0 };
  /** PONGs may take the fast path (a splitter reading host traffic rejects them as unknown-type). */
  private readonly pongFastPath: boolean;

  constructor(options: FrameSplitterOptions = {}) {
    this.options = { ...options };
    this.pongFastPath = options.from !== 'host';
  }

  /** Bytes held between pushes (an undecided F0 or a partial tether frame). */
  get bufferedBytes(): number {
    return this.state === State.AfterStart || this.state === State.InFrame ? this.frameLength : 0;
  }

  /** Feeds a chunk of the stream; returns the events it completes, in stream order. */
  push(chunk: Uint8Array): SplitterEvent[] {
    const outer = this.sink;
    this.sink = null; // collected, even when called from a pushTo() sink
    try {
      for (let i = 0; i < chunk.length; i++) this.byte(chunk[i]! & 0xff);
      return this.take();
    } finally {
      this.sink = outer;
    }
  }

  /**
   * Feeds `chunk[0, length)` and hands what it completes to `sink` before returning (the same
   * events as push(), in the same order). The chunk is not kept: it may be a reused buffer.
   */
  pushTo(chunk: Uint8Array, length: number, sink: SplitterSink): void {
    // A sink may push again from inside a callback (a fake board answering a write at once):
    // the inner push runs to its end first, as its bytes came later.
    const outer = this.sink;
    this.sink = sink;
    try {
      for (let i = 0; i < length; i++) this.byte(chunk[i]! & 0xff);
      this.flushFirmata();
    } finally {
      this.sink = outer;
    }
  }

  /**
   * Ends the stream: an undecided F0 is passed on as Firmata, a partial tether frame is
   * reported as a 'not-sysex' error. The splitter is then ready for a new stream.
   */
  flush(): SplitterEvent[] {
    if (this.state === State.AfterStart) {
      this.firmata.push(START_SYSEX);
    } else if (this.state === State.InFrame) {
      this.abandon('stream ended before F7');
    }
    this.state = State.Idle;
    this.frameLength = 0;
    return this.take();
  }

  private take(): SplitterEvent[] {
    this.flushFirmata();
    const events = this.events;
    this.events = [];
    return events;
  }

  private flushFirmata(): void {
    if (this.firmata.length > 0) {
      const bytes = Uint8Array.from(this.firmata);
      this.firmata = [];
      if (this.sink !== null) this.sink.firmata(bytes);
      else this.events.push({ kind: 'firmata', bytes });
    }
  }

  private emit(event: SplitterEvent): void {
    this.flushFirmata();
    const sink = this.sink;
    if (sink === null) this.events.push(event);
    else if (event.kind === 'message') sink.message(event.message);
    else if (event.kind === 'error') sink.error(event.error, event.raw);
    else sink.firmata(event.bytes);
  }

  private raw(extra?: number): Uint8Array {
    const out = new Uint8Array(this.frameLength + (extra === undefined ? 0 : 1));
    out.set(this.frame.subarray(0, this.frameLength));
    if (extra !== undefined) out[this.frameLength] = extra;
    return out;
  }

  /** Drops the frame being collected (the splitter is Idle before the sink hears of it). */
  private abandon(why: string): void {
    const error = new ProtocolError('not-sysex', `tether frame abandoned: ${why}`, this.frameLength > 3 ? this.frame[3] : undefined);
    const raw = this.raw();
    this.frameLength = 0;
    this.state = State.Idle;
    this.emit({ kind: 'error', error, raw });
  }

  private startFrame(): void {
    this.frame[0] = START_SYSEX;
    this.frameLength = 1;
    this.state = State.AfterStart;
  }

  /** A byte seen outside a tether frame. */
  private idle(b: number): void {
    if (b === START_SYSEX) {
      this.startFrame();
    } else {
      this.state = State.Idle;
      this.firmata.push(b);
    }
  }

  private byte(b: number): void {
    switch (this.state) {
      case State.Idle:
        this.idle(b);
        return;

      case State.AfterStart:
        if (b === SYSEX_TETHER) {
          this.frame[1] = b;
          this.frameLength = 2;
          this.state = State.InFrame;
        } else {
          // Another sysex (or an aborted F0): all of it is Firmata traffic.
          this.firmata.push(START_SYSEX);
          this.frameLength = 0;
          this.state = State.Idle;
          this.idle(b);
        }
        return;

      case State.InFrame:
        if (b === END_SYSEX) {
          const sink = this.sink;
          if (sink !== null && sink.pong !== undefined && this.pongFastPath && readPongBody(this.frame, 1, this.frameLength, this.pongFields)) {
            this.flushFirmata();
            this.frameLength = 0;
            this.state = State.Idle;
            sink.pong(this.pongFields);
            return;
          }
          const result = decodeBody(this.frame.subarray(1, this.frameLength), this.options);
          const raw = result.ok ? null : this.raw(END_SYSEX);
          // Idle before the sink hears of it: a sink may feed the splitter again (a reply written and answered at once).
          this.frameLength = 0;
          this.state = State.Idle;
          if (result.ok) {
            this.emit({ kind: 'message', message: result.message });
          } else {
            this.emit({ kind: 'error', error: result.error, raw: raw! });
          }
        } else if (b >= 0x80) {
          this.abandon(`command byte ${hex(b)} before F7`);
          this.idle(b);
        } else if (this.frameLength - 1 >= MAX_BODY) {
          const error = new ProtocolError('too-long', `tether frame body exceeds ${MAX_BODY} bytes`, this.frame[3]);
          const raw = this.raw(b);
          this.frameLength = 0;
          this.state = State.Discarding;
          this.emit({ kind: 'error', error, raw });
        } else {
          this.frame[this.frameLength++] = b;
        }
        return;

      case State.Discarding:
        if (b === END_SYSEX) {
          this.state = State.Idle;
        } else if (b >= 0x80) {
          this.state = State.Idle;
          this.idle(b);
        }
        return;
    }
  }
}
