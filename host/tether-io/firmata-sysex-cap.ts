/**
 * Bounds what a board (or anything on the other end of a `tcp://` bridge) can make firmata.js
 * hold. firmata.js collects a sysex message byte by byte in a plain array until its F7 and has
 * no limit: 10 MiB without an F7 grew the daemon by 279 MiB, and a peer sending data bytes
 * after an F0 grows it for as long as it sends. This filter sits in front of firmata.js:
 *
 * - bytes outside a sysex pass through as they come (firmata.js holds at most 3 of them);
 * - a sysex (F0 ... F7) is held here until its F7 and passed on whole if it is at most
 *   `maxSysexBytes` long, F0 and F7 included;
 * - a longer one is dropped, all of it, up to and including its F7 (or up to the next command
 *   byte, which is then processed normally), and counted;
 * - a sysex cut short by a command byte (0x80-0xFF other than F7) is dropped and counted too:
 *   firmata.js would discard it at that byte anyway (it restarts its buffer on a command byte).
 *
 * The longest sysex a board sends: tether's Uno firmware, the capability response, 183 bytes
 * (20 pins x at most 9 + 3); StandardFirmata on an Arduino Mega, about 1.2 KB (70 pins). The
 * default cap, 4096 bytes, leaves room for that and bounds what is held to 4 KiB.
 * Pure: no I/O, no timers.
 */

const START_SYSEX = 0xf0;
const END_SYSEX = 0xf7;

export const DEFAULT_MAX_SYSEX_BYTES = 4096;

export interface SysexCapStats {
  /** Bytes not passed to firmata.js. */
  droppedBytes: number;
  /** Sysex messages dropped for being longer than the cap. */
  tooLong: number;
  /** Sysex messages dropped for being cut short by a command byte. */
  cutShort: number;
}

/** What push() reports besides the bytes to pass on. */
export type SysexCapEvent =
  | { kind: 'too-long'; limit: number }
  | { kind: 'dropped'; bytes: number; why: 'too-long' | 'cut-short' };

export class FirmataSysexCap {
  readonly maxSysexBytes: number;
  readonly stats: SysexCapStats = { droppedBytes: 0, tooLong: 0, cutShort: 0 };
  private readonly held: Uint8Array;
  private heldLength = 0;
  private state: 'outside' | 'sysex' | 'discarding' = 'outside';
  /** Bytes of the sysex being discarded, so far. */
  private discarded = 0;

  constructor(maxSysexBytes = DEFAULT_MAX_SYSEX_BYTES) {
    if (!Number.isInteger(maxSysexBytes) || maxSysexBytes < 2) throw new RangeError(`maxSysexBytes must be an integer >= 2, got ${maxSysexBytes}`);
    this.maxSysexBytes = maxSysexBytes;
    this.held = new Uint8Array(maxSysexBytes);
  }

  /** Bytes held for an unfinished sysex (at most maxSysexBytes - 1). */
  get heldBytes(): number {
    return this.heldLength;
  }

  /** Filters one chunk: what may go to firmata.js, in order, and what happened. */
  push(chunk: Uint8Array): { out: Uint8Array; events: SysexCapEvent[] } {
    const out: number[] = [];
    const events: SysexCapEvent[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      switch (this.state) {
        case 'outside':
          this.outside(b, out);
          break;
        case 'sysex':
          if (b === END_SYSEX) {
            // Room for the F7 is always kept: a held sysex plus its F7 is within the cap.
            for (let j = 0; j < this.heldLength; j++) out.push(this.held[j]!);
            out.push(END_SYSEX);
            this.heldLength = 0;
            this.state = 'outside';
          } else if (b >= 0x80) {
            const bytes = this.heldLength;
            this.stats.cutShort++;
            this.stats.droppedBytes += bytes;
            this.heldLength = 0;
            this.state = 'outside';
            events.push({ kind: 'dropped', bytes, why: 'cut-short' });
            this.outside(b, out);
          } else if (this.heldLength < this.maxSysexBytes - 1) {
            this.held[this.heldLength++] = b; // room is kept for the F7
          } else {
            this.overflow(events);
            this.discarded++;
            this.stats.droppedBytes++;
          }
          break;
        case 'discarding':
          if (b === END_SYSEX) {
            this.endDiscard(events, 1);
          } else if (b >= 0x80) {
            this.endDiscard(events, 0);
            this.outside(b, out);
          } else {
            this.discarded++;
            this.stats.droppedBytes++;
          }
          break;
      }
    }
    return { out: Uint8Array.from(out), events };
  }

  private outside(b: number, out: number[]): void {
    if (b === START_SYSEX) {
      this.held[0] = b;
      this.heldLength = 1;
      this.state = 'sysex';
    } else {
      out.push(b);
    }
  }

  /** The held sysex outgrew the cap: drop what is held and discard up to its end. */
  private overflow(events: SysexCapEvent[]): void {
    this.stats.tooLong++;
    this.stats.droppedBytes += this.heldLength;
    this.discarded = this.heldLength;
    this.heldLength = 0;
    this.state = 'discarding';
    events.push({ kind: 'too-long', limit: this.maxSysexBytes });
  }

  private endDiscard(events: SysexCapEvent[], trailing: number): void {
    this.discarded += trailing;
    this.stats.droppedBytes += trailing;
    events.push({ kind: 'dropped', bytes: this.discarded, why: 'too-long' });
    this.discarded = 0;
    this.state = 'outside';
  }
}
