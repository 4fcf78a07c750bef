/**
 * Reads what a Firmata board sends (device -> host direction) as whole messages: version
 * reports, firmware names, pin states, input reports and other sysex replies. Only complete,
 * well-formed messages come out; stray data bytes and messages cut short by a command byte are
 * dropped, so "a valid Firmata answer" means something. Pure: no I/O, no timers. Like a
 * Firmata parser it restarts on every command byte, so garbage cannot wedge it.
 */

export type FirmataReply =
  | { kind: 'version'; major: number; minor: number }
  | { kind: 'firmware'; major: number; minor: number; name: string }
  | { kind: 'pin-state'; pin: number; mode: number; state: number }
  | { kind: 'digital'; port: number; value: number }
  | { kind: 'analog'; channel: number; value: number }
  | { kind: 'sysex'; id: number; data: number[] };

const DIGITAL_MESSAGE = 0x90;
const ANALOG_MESSAGE = 0xe0;
const REPORT_VERSION = 0xf9;
const START_SYSEX = 0xf0;
const END_SYSEX = 0xf7;
const REPORT_FIRMWARE = 0x79;
const PIN_STATE_RESPONSE = 0x6e;
/** Longest sysex kept (a capability response of a board with many pins fits). */
const MAX_SYSEX = 4096;

export class FirmataReplyReader {
  private command = 0;
  private data: number[] = [];
  private inSysex = false;
  private overflow = false;

  push(bytes: Uint8Array | readonly number[]): FirmataReply[] {
    const out: FirmataReply[] = [];
    for (const byte of bytes) this.byte(byte & 0xff, out);
    return out;
  }

  private byte(b: number, out: FirmataReply[]): void {
    if (b >= 0x80) {
      if (this.inSysex && b === END_SYSEX) {
        this.inSysex = false;
        if (!this.overflow && this.data.length > 0) out.push(sysexReply(this.data));
        this.data = [];
        return;
      }
      // Any other command byte abandons what was in progress.
      this.inSysex = b === START_SYSEX;
      this.overflow = false;
      this.data = [];
      this.command = this.inSysex ? 0 : b;
      return;
    }
    if (this.inSysex) {
      if (this.data.length < MAX_SYSEX) this.data.push(b);
      else this.overflow = true;
      return;
    }
    if (this.command === 0) return; // a stray data byte
    this.data.push(b);
    if (this.data.length < 2) return;
    const [lsb, msb] = this.data as [number, number];
    const command = this.command;
    this.data = [];
    this.command = 0; // no running status: the next message needs its command byte
    const type = command < 0xf0 ? command & 0xf0 : command;
    if (type === DIGITAL_MESSAGE) out.push({ kind: 'digital', port: command & 0x0f, value: lsb | (msb << 7) });
    else if (type === ANALOG_MESSAGE) out.push({ kind: 'analog', channel: command & 0x0f, value: lsb | (msb << 7) });
    else if (type === REPORT_VERSION) out.push({ kind: 'version', major: lsb, minor: msb });
    // Other commands are not sent by boards: not an answer.
  }
}

function sysexReply(data: number[]): FirmataReply {
  const id = data[0]!;
  if (id === REPORT_FIRMWARE && data.length >= 3) {
    let name = '';
    for (let i = 3; i + 1 < data.length; i += 2) name += String.fromCharCode(data[i]! | (data[i + 1]! << 7));
    return { kind: 'firmware', major: data[1]!, minor: data[2]!, name };
  }
  if (id === PIN_STATE_RESPONSE && data.length >= 3) {
    let state = 0;
    for (let i = 3; i < data.length; i++) state |= data[i]! << (7 * (i - 3));
    return { kind: 'pin-state', pin: data[1]!, mode: data[2]!, state };
  }
  return { kind: 'sysex', id, data: data.slice(1) };
}
