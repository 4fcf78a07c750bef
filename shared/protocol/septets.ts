/**
 * Septet (7-bit) field encodings of the tether protocol:
 *
 * | name       | septets | encoding                                               |
 * | ---------- | ------- | ------------------------------------------------------ |
 * | `u7`       | 1       | 0..127                                                 |
 * | `u14`      | 2       | `v & 0x7F`, `(v >> 7) & 0x7F`                          |
 * | `u32`      | 5       | little-endian 7-bit groups, fifth septet bits 28-31    |
 * | `bytes[n]` | 2n      | each byte as `b & 0x7F`, `b >> 7`                      |
 * | `str`      | 1 + n   | `u7` length, then n ASCII characters 0x20-0x7E         |
 */
import { MAX_U14, MAX_U32, MAX_U7 } from './constants.ts';
import { ProtocolError } from './errors.ts';

export type ReadResult<T> = { ok: true; value: T } | { ok: false; error: ProtocolError };

function isPrintableAscii(code: number): boolean {
  return code >= 0x20 && code <= 0x7e;
}

function checkUint(name: string, value: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw new ProtocolError('out-of-range', `${name} must be an integer 0..${max}, got ${String(value)}`);
  }
}

/**
 * Appends septet fields to a growing body. Throws ProtocolError('out-of-range') on a value
 * its field cannot carry (a programming error on the sending side).
 */
export class SeptetWriter {
  private bytes: number[] = [];

  get length(): number {
    return this.bytes.length;
  }

  /** A raw 7-bit byte (header bytes, CRC septets). */
  septet(value: number, name = 'septet'): this {
    checkUint(name, value, MAX_U7);
    this.bytes.push(value);
    return this;
  }

  u7(value: number, name = 'u7'): this {
    return this.septet(value, name);
  }

  u14(value: number, name = 'u14'): this {
    checkUint(name, value, MAX_U14);
    this.bytes.push(value & 0x7f, (value >> 7) & 0x7f);
    return this;
  }

  u32(value: number, name = 'u32'): this {
    checkUint(name, value, MAX_U32);
    // Arithmetic instead of bit operators: JS bit operators are 32-bit signed.
    let v = value;
    for (let i = 0; i < 5; i++) {
      this.bytes.push(v % 128);
      v = Math.floor(v / 128);
    }
    return this;
  }

  bytesField(data: Uint8Array, name = 'bytes'): this {
    if (!(data instanceof Uint8Array)) {
      throw new ProtocolError('out-of-range', `${name} must be a Uint8Array`);
    }
    for (const b of data) this.bytes.push(b & 0x7f, b >> 7);
    return this;
  }

  str(value: string, maxLength: number = MAX_U7, name = 'str'): this {
    if (typeof value !== 'string') {
      throw new ProtocolError('out-of-range', `${name} must be a string`);
    }
    if (value.length > maxLength) {
      throw new ProtocolError('out-of-range', `${name} is ${value.length} characters, at most ${maxLength} fit`);
    }
    for (let i = 0; i < value.length; i++) {
      const code = value.charCodeAt(i);
      if (!isPrintableAscii(code)) {
        throw new ProtocolError(
          'out-of-range',
          `${name} must be printable ASCII (0x20-0x7E), character ${i} is 0x${code.toString(16)}`,
        );
      }
    }
    this.bytes.push(value.length);
    for (let i = 0; i < value.length; i++) this.bytes.push(value.charCodeAt(i));
    return this;
  }

  toUint8Array(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

/** The u32 in the five septets at `bytes[i..i+4]`, least significant first (unchecked: the caller checks the range). */
export function septetsToU32(bytes: Uint8Array, i: number): number {
  return bytes[i]! + bytes[i + 1]! * 0x80 + bytes[i + 2]! * 0x4000 + bytes[i + 3]! * 0x200000 + bytes[i + 4]! * 0x10000000;
}

/**
 * Reads septet fields from a payload. Never throws: every read returns a ReadResult, with
 * 'bad-length' when the input runs short and 'out-of-range' when a septet carries bits above
 * the field width (a u32 top septet above 0x0F, a bytes high septet above 0x01), a byte is not
 * 7-bit clean, or a str character is not printable ASCII.
 */
export class SeptetReader {
  private pos = 0;
  private readonly data: Uint8Array;
  private readonly messageType: number | undefined;

  /** `messageType` is attached to the errors it returns. */
  constructor(data: Uint8Array, messageType?: number) {
    this.data = data;
    this.messageType = messageType;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.data.length - this.pos;
  }

  private fail<T>(code: 'bad-length' | 'out-of-range', message: string): ReadResult<T> {
    return { ok: false, error: new ProtocolError(code, message, this.messageType) };
  }

  private take(count: number, name: string): ReadResult<Uint8Array> {
    if (this.remaining < count) {
      return this.fail(
        'bad-length',
        `payload ends before ${name}: needs ${count} septets at offset ${this.pos}, ${this.remaining} left`,
      );
    }
    const slice = this.data.subarray(this.pos, this.pos + count);
    for (let i = 0; i < slice.length; i++) {
      if (slice[i]! > 0x7f) {
        return this.fail('out-of-range', `${name}: byte 0x${slice[i]!.toString(16)} is not a septet`);
      }
    }
    this.pos += count;
    return { ok: true, value: slice };
  }

  u7(name = 'u7'): ReadResult<number> {
    const r = this.take(1, name);
    return r.ok ? { ok: true, value: r.value[0]! } : r;
  }

  u14(name = 'u14'): ReadResult<number> {
    const r = this.take(2, name);
    return r.ok ? { ok: true, value: r.value[0]! | (r.value[1]! << 7) } : r;
  }

  u32(name = 'u32'): ReadResult<number> {
    const r = this.take(5, name);
    if (!r.ok) return r;
    const s = r.value;
    if (s[4]! > 0x0f) {
      return this.fail('out-of-range', `${name}: top septet 0x${s[4]!.toString(16)} has bits above 31`);
    }
    return { ok: true, value: septetsToU32(s, 0) };
  }

  bytesField(count: number, name = 'bytes'): ReadResult<Uint8Array> {
    const r = this.take(count * 2, name);
    if (!r.ok) return r;
    const out = new Uint8Array(count);
    for (let i = 0; i < count; i++) {
      const lo = r.value[2 * i]!;
      const hi = r.value[2 * i + 1]!;
      if (hi > 0x01) {
        return this.fail('out-of-range', `${name}[${i}]: high septet 0x${hi.toString(16)} above 0x01`);
      }
      out[i] = lo | (hi << 7);
    }
    return { ok: true, value: out };
  }

  str(name = 'str'): ReadResult<string> {
    const len = this.u7(`${name} length`);
    if (!len.ok) return len;
    const r = this.take(len.value, name);
    if (!r.ok) return r;
    let s = '';
    for (let i = 0; i < r.value.length; i++) {
      const code = r.value[i]!;
      if (!isPrintableAscii(code)) {
        return this.fail('out-of-range', `${name}: character ${i} is 0x${code.toString(16)}, not printable ASCII`);
      }
      s += String.fromCharCode(code);
    }
    return { ok: true, value: s };
  }

  /** 'bad-length' unless every byte has been read. */
  end(): ReadResult<void> {
    if (this.remaining !== 0) {
      return this.fail('bad-length', `${this.remaining} unexpected septets after the last field`);
    }
    return { ok: true, value: undefined };
  }
}
