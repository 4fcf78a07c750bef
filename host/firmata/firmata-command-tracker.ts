import { emptyPinRecord, type PinRecord } from './pin-record.ts';

const DIGITAL_MESSAGE = 0x90;
const ANALOG_MESSAGE = 0xe0;
const REPORT_ANALOG = 0xc0;
const REPORT_DIGITAL = 0xd0;
const SET_PIN_MODE = 0xf4;
const SET_DIGITAL_PIN_VALUE = 0xf5;
const START_SYSEX = 0xf0;
const END_SYSEX = 0xf7;
const SYSTEM_RESET = 0xff;
const EXTENDED_ANALOG = 0x6f;
const SAMPLING_INTERVAL = 0x7a;
const REPORT_FIRMWARE = 0x79;
const MAX_SYSEX = 256;

/**
 * Follows the Firmata commands a host program sends (host -> device direction) and keeps
 * the resulting pin configuration in a PinRecord. Pure: fed bytes, never writes any.
 * Like the device's own parser it restarts on every command byte, so garbage cannot wedge it.
 */
export class FirmataCommandTracker {
  readonly record: PinRecord = emptyPinRecord();
  /** Called for each firmware-name query (`F0 79 F7`) the program sends. */
  onFirmwareQuery: (() => void) | undefined;
  private command = 0;
  private data: number[] = [];
  private inSysex = false;

  observe(bytes: Uint8Array | readonly number[]): void {
    for (const byte of bytes) this.byte(byte & 0xff);
  }

  private byte(b: number): void {
    if (this.inSysex) {
      if (b === END_SYSEX) {
        this.inSysex = false;
        this.sysex(this.data);
        this.data = [];
      } else if (b >= 0x80) {
        this.inSysex = false; // a command byte ends a broken sysex
        this.data = [];
        this.byte(b);
      } else if (this.data.length < MAX_SYSEX) {
        this.data.push(b);
      }
      return;
    }
    if (b >= 0x80) {
      this.data = [];
      if (b === START_SYSEX) {
        this.inSysex = true;
        this.command = 0;
      } else if (b === SYSTEM_RESET) {
        this.reset();
        this.command = 0;
      } else {
        this.command = b;
      }
      return;
    }
    if (this.command === 0) return; // stray data byte (e.g. the 0x00 wake byte)
    this.data.push(b);
    const type = this.command < 0xf0 ? this.command & 0xf0 : this.command;
    const needed = type === REPORT_ANALOG || type === REPORT_DIGITAL ? 1 : 2;
    if (this.data.length < needed) return;
    const [a, b2] = this.data as [number, number];
    this.data = [];
    switch (type) {
      case DIGITAL_MESSAGE:
        this.record.digitalPorts.set(this.command & 0x0f, a | (b2 << 7));
        break;
      case ANALOG_MESSAGE:
        this.record.analogWrites.set(this.command & 0x0f, a | (b2 << 7));
        break;
      case REPORT_ANALOG:
        if (a) this.record.analogReporting.add(this.command & 0x0f);
        else this.record.analogReporting.delete(this.command & 0x0f);
        this.command = 0;
        break;
      case REPORT_DIGITAL:
        if (a) this.record.digitalReporting.add(this.command & 0x0f);
        else this.record.digitalReporting.delete(this.command & 0x0f);
        this.command = 0;
        break;
      case SET_PIN_MODE:
        this.record.modes.set(a, b2);
        this.command = 0;
        break;
      case SET_DIGITAL_PIN_VALUE: {
        const port = a >> 3;
        const bit = 1 << (a & 7);
        const value = this.record.digitalPorts.get(port) ?? 0;
        this.record.digitalPorts.set(port, b2 ? value | bit : value & ~bit);
        this.command = 0;
        break;
      }
      default:
        this.command = 0; // a command the record does not need (queries)
    }
  }

  private sysex(data: number[]): void {
    if (data[0] === REPORT_FIRMWARE && data.length === 1) {
      this.onFirmwareQuery?.();
    } else if (data[0] === SAMPLING_INTERVAL && data.length >= 3) {
      this.record.samplingIntervalMs = data[1]! | (data[2]! << 7);
    } else if (data[0] === EXTENDED_ANALOG && data.length >= 3) {
      let value = 0;
      for (let i = 2; i < data.length; i++) value |= data[i]! << (7 * (i - 2));
      this.record.analogWrites.set(data[1]!, value);
    }
  }

  /** SYSTEM_RESET: the device returns its pins to defaults, and so does the record. */
  private reset(): void {
    const registers = this.record.registers;
    Object.assign(this.record, emptyPinRecord(), { registers });
  }
}
