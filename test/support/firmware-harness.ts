import { readFileSync } from 'node:fs';
import { EmulatedUno } from '../../emulator/avr/emulated-uno.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { encodeFrame, FrameSplitter } from '../../shared/protocol/index.ts';
import type { DeviceMessage, HostMessage } from '../../shared/protocol/messages.ts';
import type { ProtocolError } from '../../shared/protocol/errors.ts';

type Of<T extends DeviceMessage['type']> = Extract<DeviceMessage, { type: T }>;

/**
 * The real firmware in the emulator, driven in emulated time (advance) so firmware tests
 * are deterministic and quick; the host side speaks through the real codec.
 */
export class FirmwareHarness {
  readonly uno: EmulatedUno;
  readonly messages: DeviceMessage[] = [];
  readonly errors: ProtocolError[] = [];
  firmata: number[] = [];
  private readonly splitter = new FrameSplitter();
  private cursor = 0;

  /** `firmwareHex`: another image than the shipped firmware (e.g. the plain-Firmata build). */
  constructor(options: { eepromPath?: string; firmwareHex?: string } = {}) {
    this.uno = new EmulatedUno({ firmwareHex: options.firmwareHex ?? readFileSync(FIRMWARE_HEX_PATH, 'utf8'), eepromPath: options.eepromPath });
    this.uno.on('data', (bytes) => {
      for (const event of this.splitter.push(bytes)) {
        if (event.kind === 'message') this.messages.push(event.message as DeviceMessage);
        else if (event.kind === 'error') this.errors.push(event.error);
        else this.firmata.push(...event.bytes);
      }
    });
  }

  send(message: HostMessage): void {
    this.uno.write(encodeFrame(message));
  }

  sendRaw(bytes: readonly number[] | Uint8Array): void {
    this.uno.write(bytes);
  }

  /** Advances emulated time in small steps until `predicate` returns a value. */
  runUntil<T>(predicate: () => T | undefined | false, maxMs: number, stepMs = 2): T {
    for (let t = 0; t <= maxMs; t += stepMs) {
      const value = predicate();
      if (value !== undefined && value !== false) return value;
      this.uno.advance(stepMs);
    }
    const value = predicate();
    if (value !== undefined && value !== false) return value;
    throw new Error(`condition not met within ${maxMs} emulated ms`);
  }

  /** The next device message of `type` after those already taken (earlier ones are skipped). */
  next<T extends DeviceMessage['type']>(type: T, maxMs = 2000, where: (m: Of<T>) => boolean = () => true): Of<T> {
    return this.runUntil(() => {
      for (let i = this.cursor; i < this.messages.length; i++) {
        const m = this.messages[i]!;
        if (m.type === type && where(m as Of<T>)) {
          this.cursor = i + 1;
          return m as Of<T>;
        }
      }
      return undefined;
    }, maxMs);
  }

  /** Messages of `type` received from now on (for asserting that nothing came). */
  mark(): number {
    this.cursor = this.messages.length;
    return this.cursor;
  }

  since(mark: number, type?: DeviceMessage['type']): DeviceMessage[] {
    return this.messages.slice(mark).filter((m) => !type || m.type === type);
  }

  /** PING and wait for its PONG. */
  ping(seq: number, leaseMs = 0): Of<'pong'> {
    this.send({ type: 'ping', seq, leaseMs });
    return this.next('pong', 500, (m) => m.seq === seq);
  }

  readState(offset: number, length: number): Uint8Array {
    this.send({ type: 'state-read', offset, length });
    return this.next('state-data', 500, (m) => m.offset === offset).data;
  }
}

/** Firmata byte sequences used by the tests (from the Firmata protocol). */
export const firmata = {
  setPinMode: (pin: number, mode: number) => [0xf4, pin, mode],
  setDigitalPin: (pin: number, value: 0 | 1) => [0xf5, pin, value],
  analogWrite: (pin: number, value: number) => [0xe0 | pin, value & 0x7f, value >> 7],
  reportDigitalPort: (port: number, on: boolean) => [0xd0 | port, on ? 1 : 0],
  reportAnalog: (channel: number, on: boolean) => [0xc0 | channel, on ? 1 : 0],
  pinStateQuery: (pin: number) => [0xf0, 0x6d, pin, 0xf7],
  systemReset: () => [0xff],
  MODE: { INPUT: 0, OUTPUT: 1, ANALOG: 2, PWM: 3, PULLUP: 0x0b },
};
