import { describe, expect, it } from 'vitest';
import {
  crc8,
  decodeBody,
  decodeFrame,
  encodeFrame,
  frameFromPayload,
  MAX_BODY,
  MAX_NAME_LENGTH,
  MESSAGE_TYPE_NUMBERS,
  ProtocolError,
  SeptetReader,
  SeptetWriter,
  type DeviceConfig,
  type Message,
  type ProtocolErrorCode,
} from '../../shared/protocol/index.ts';

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const ascii = (s: string): number[] => Array.from(s, (c) => c.charCodeAt(0));

function decodeOk(frame: Uint8Array): Message {
  const result = decodeFrame(frame);
  if (!result.ok) throw new Error(`expected a message, got ${result.error.code}: ${result.error.message}`);
  return result.message;
}

function expectReject(frame: Uint8Array, code: ProtocolErrorCode): ProtocolError {
  const result = decodeFrame(frame);
  expect(result.ok, `frame ${Array.from(frame, (b) => b.toString(16)).join(' ')}`).toBe(false);
  if (result.ok) throw new Error('unreachable');
  expect(result.error).toBeInstanceOf(ProtocolError);
  expect(result.error.code).toBe(code);
  expect(result.error.message.length).toBeGreaterThan(0);
  return result.error;
}

const config: DeviceConfig = { watchdogMs: 2000, policy: 'sleep', hostTimeoutMs: 0, sleepMs: 8000, awakeMs: 1000 };
const maxConfig: DeviceConfig = {
  watchdogMs: 16383,
  policy: 'reset',
  hostTimeoutMs: 0xffffffff,
  sleepMs: 0xffffffff,
  awakeMs: 0xffffffff,
};

const examples: Message[] = [
  { type: 'hello-request' },
  { type: 'config-get' },
  { type: 'ping', seq: 0, leaseMs: 0 },
  { type: 'ping', seq: 300, leaseMs: 5000 },
  { type: 'ping', seq: 16383, leaseMs: 0xffffffff },
  { type: 'beats', seq: 7, leaseMs: 0, intervalMs: 1000, forMs: 30000 },
  { type: 'beats', seq: 16383, leaseMs: 0xffffffff, intervalMs: 100, forMs: 0xffffffff },
  { type: 'beats', seq: 0, leaseMs: 0, intervalMs: 0, forMs: 0 },
  { type: 'state-read', offset: 0, length: 1 },
  { type: 'state-read', offset: 16, length: 16 },
  { type: 'state-read', offset: 31, length: 1 },
  { type: 'state-write', offset: 0, data: bytes(0) },
  { type: 'state-write', offset: 16, data: Uint8Array.from({ length: 16 }, (_, i) => (i * 37 + 0x80) & 0xff) },
  { type: 'config-set', config },
  { type: 'config-set', config: { watchdogMs: 0, policy: 'stay', hostTimeoutMs: 0, sleepMs: 0, awakeMs: 0 } },
  { type: 'config-set', config: maxConfig },
  {
    type: 'hello',
    fwMajor: 1,
    fwMinor: 2,
    bootId: 0x12345678,
    resetCauses: ['external', 'watchdog'],
    stateSurvived: true,
    pinsRestored: true,
    reply: false,
    watchdogMs: 2000,
    policy: 'sleep',
    hostTimeoutMs: 0,
    capabilities: { watchdog: true, sleep: true, state: true, pinRestore: true, beats: false },
    stateSize: 32,
    name: 'uno',
  },
  {
    type: 'hello',
    fwMajor: 0,
    fwMinor: 0,
    bootId: 0,
    resetCauses: [],
    stateSurvived: false,
    pinsRestored: false,
    reply: true,
    watchdogMs: 0,
    policy: 'stay',
    hostTimeoutMs: 0,
    capabilities: { watchdog: false, sleep: false, state: false, pinRestore: false, beats: false },
    stateSize: 0,
    name: '',
  },
  {
    type: 'hello',
    fwMajor: 127,
    fwMinor: 127,
    bootId: 0xffffffff,
    resetCauses: ['power-on', 'external', 'brown-out', 'watchdog'],
    stateSurvived: true,
    pinsRestored: false,
    reply: true,
    watchdogMs: 16383,
    policy: 'reset',
    hostTimeoutMs: 0xffffffff,
    capabilities: { watchdog: true, sleep: false, state: true, pinRestore: false, beats: false },
    stateSize: 127,
    name: ' ~'.padEnd(MAX_NAME_LENGTH, 'x'),
  },
  {
    type: 'pong',
    seq: 16383,
    uptimeMs: 0xffffffff,
    bootId: 7,
    leaseActive: true,
    sleepPending: false,
    stateValid: true,
    hostWasLost: false,
    leaseRemainingMs: 4999,
  },
  {
    type: 'pong',
    seq: 0,
    uptimeMs: 0,
    bootId: 0,
    leaseActive: false,
    sleepPending: true,
    stateValid: false,
    hostWasLost: true,
    leaseRemainingMs: 0,
  },
  {
    type: 'beat',
    seq: 12,
    uptimeMs: 123456,
    bootId: 0xffffffff,
    leaseActive: false,
    sleepPending: true,
    stateValid: true,
    hostWasLost: false,
    leaseRemainingMs: 0,
  },
  { type: 'state-data', offset: 0, data: Uint8Array.from({ length: 16 }, (_, i) => 255 - i) },
  { type: 'state-data', offset: 31, data: bytes(0x80) },
  { type: 'sleeping', durationMs: 8000, wakeSources: ['timer', 'serial'] },
  { type: 'sleeping', durationMs: 0xffffffff, wakeSources: [] },
  { type: 'awake', sleptMs: 0, wakeCauses: ['serial'] },
  { type: 'awake', sleptMs: 123456789, wakeCauses: ['timer', 'serial', 'pin'] },
  { type: 'config', config },
  { type: 'config', config: maxConfig },
  { type: 'error', code: 'bad-version', offendingType: 0 },
  { type: 'error', code: 'bad-crc', offendingType: 0x02 },
  { type: 'error', code: 'unknown-type', offendingType: 0x7f },
  { type: 'error', code: 'bad-length', offendingType: 0x04 },
  { type: 'error', code: 'out-of-range', offendingType: 0x03 },
];

describe('crc8 (CRC-8/SMBUS)', () => {
  it('has the catalogue check value 0xF4 for "123456789"', () => {
    expect(crc8(bytes(...ascii('123456789')))).toBe(0xf4);
  });
  it('is 0 for no input and matches hand-computed single bytes', () => {
    expect(crc8(bytes())).toBe(0);
    expect(crc8(bytes(0x01))).toBe(0x07);
    expect(crc8(bytes(0x80))).toBe(0x89);
  });
  it('honours start/end and continues from a previous crc', () => {
    const data = bytes(...ascii('xx123456789yy'));
    expect(crc8(data, 2, 11)).toBe(0xf4);
    expect(crc8(bytes(...ascii('56789')), 0, 5, crc8(bytes(...ascii('1234'))))).toBe(0xf4);
  });
});

describe('septet fields', () => {
  it('writes u7/u14/u32/bytes/str as the spec says', () => {
    const w = new SeptetWriter().u7(0x55).u14(300).u32(0xffffffff).bytesField(bytes(0xff, 0x00, 0x80)).str('Hi');
    expect(Array.from(w.toUint8Array())).toEqual([
      0x55,
      0x2c, 0x02,
      0x7f, 0x7f, 0x7f, 0x7f, 0x0f,
      0x7f, 0x01, 0x00, 0x00, 0x00, 0x01,
      0x02, 0x48, 0x69,
    ]);
  });

  it('reads back what it writes', () => {
    const w = new SeptetWriter().u7(127).u14(16383).u32(0x80000001).bytesField(bytes(1, 254)).str('ok');
    const r = new SeptetReader(w.toUint8Array());
    expect(r.u7()).toEqual({ ok: true, value: 127 });
    expect(r.u14()).toEqual({ ok: true, value: 16383 });
    expect(r.u32()).toEqual({ ok: true, value: 0x80000001 });
    expect(r.bytesField(2)).toEqual({ ok: true, value: bytes(1, 254) });
    expect(r.str()).toEqual({ ok: true, value: 'ok' });
    expect(r.end().ok).toBe(true);
  });

  it.each([
    ['u7', (w: SeptetWriter) => w.u7(128)],
    ['u7 negative', (w: SeptetWriter) => w.u7(-1)],
    ['u14', (w: SeptetWriter) => w.u14(16384)],
    ['u14 fraction', (w: SeptetWriter) => w.u14(1.5)],
    ['u32', (w: SeptetWriter) => w.u32(0x100000000)],
    ['u32 NaN', (w: SeptetWriter) => w.u32(Number.NaN)],
    ['str non-ASCII', (w: SeptetWriter) => w.str('é')],
    ['str control char', (w: SeptetWriter) => w.str('a\n')],
    ['str too long', (w: SeptetWriter) => w.str('abc', 2)],
  ])('writer rejects %s with out-of-range', (_name, write) => {
    expect(() => write(new SeptetWriter())).toThrowError(expect.objectContaining({ code: 'out-of-range' }));
  });

  it('reader returns bad-length on short input instead of throwing', () => {
    expect(new SeptetReader(bytes()).u7()).toMatchObject({ ok: false, error: { code: 'bad-length' } });
    expect(new SeptetReader(bytes(1)).u14()).toMatchObject({ ok: false, error: { code: 'bad-length' } });
    expect(new SeptetReader(bytes(1, 2, 3, 4)).u32()).toMatchObject({ ok: false, error: { code: 'bad-length' } });
    expect(new SeptetReader(bytes(1, 0, 1)).bytesField(2)).toMatchObject({ ok: false, error: { code: 'bad-length' } });
    expect(new SeptetReader(bytes(3, 0x41)).str()).toMatchObject({ ok: false, error: { code: 'bad-length' } });
    expect(new SeptetReader(bytes(1)).end()).toMatchObject({ ok: false, error: { code: 'bad-length' } });
  });

  it('reader rejects bits above the field width', () => {
    expect(new SeptetReader(bytes(0, 0, 0, 0, 0x10)).u32()).toMatchObject({ ok: false, error: { code: 'out-of-range' } });
    expect(new SeptetReader(bytes(0, 0, 0, 0, 0x0f)).u32()).toEqual({ ok: true, value: 0xf0000000 });
    expect(new SeptetReader(bytes(0x7f, 0x02)).bytesField(1)).toMatchObject({ ok: false, error: { code: 'out-of-range' } });
    expect(new SeptetReader(bytes(0x80)).u7()).toMatchObject({ ok: false, error: { code: 'out-of-range' } });
    expect(new SeptetReader(bytes(1, 0x1f)).str()).toMatchObject({ ok: false, error: { code: 'out-of-range' } });
  });
});

describe('golden frames (written out by hand from PROTOCOL.md)', () => {
  it('HELLO_REQUEST', () => {
    // CRC over 01 01: crc(01) = 0x07; 0x07 ^ 0x01 = 0x06 -> 0x12.
    const frame = bytes(0xf0, 0x0d, 0x01, 0x01, 0x12, 0x00, 0xf7);
    expect(encodeFrame({ type: 'hello-request' })).toEqual(frame);
    expect(decodeOk(frame)).toEqual({ type: 'hello-request' });
  });

  it('PING seq 300 lease 5000', () => {
    // seq 300 = 0x2C + 2*128; lease 5000 = 0x08 + 39*128; CRC over 01 02 2C 02 08 27 00 00 00 = 0x86.
    const frame = bytes(0xf0, 0x0d, 0x01, 0x02, 0x2c, 0x02, 0x08, 0x27, 0x00, 0x00, 0x00, 0x06, 0x01, 0xf7);
    expect(encodeFrame({ type: 'ping', seq: 300, leaseMs: 5000 })).toEqual(frame);
    expect(decodeOk(frame)).toEqual({ type: 'ping', seq: 300, leaseMs: 5000 });
  });

  it('CONFIG_GET', () => {
    expect(encodeFrame({ type: 'config-get' })).toEqual(bytes(0xf0, 0x0d, 0x01, 0x06, 0x07, 0x00, 0xf7));
  });

  it('STATE_WRITE offset 2 data [FF 01 80]', () => {
    const frame = bytes(0xf0, 0x0d, 0x01, 0x04, 0x02, 0x03, 0x7f, 0x01, 0x01, 0x00, 0x00, 0x01, 0x7b, 0x01, 0xf7);
    const msg: Message = { type: 'state-write', offset: 2, data: bytes(0xff, 0x01, 0x80) };
    expect(encodeFrame(msg)).toEqual(frame);
    expect(decodeOk(frame)).toEqual(msg);
  });

  it('HELLO', () => {
    const frame = bytes(
      0xf0, 0x0d, 0x01, 0x41,
      0x01, 0x02, // fw 1.2
      0x78, 0x2c, 0x51, 0x11, 0x01, // boot_id 0x12345678
      0x0a, // reset_cause external | watchdog
      0x03, // flags state survived | pins restored
      0x50, 0x0f, // watchdog_ms 2000
      0x01, // policy sleep
      0x00, 0x00, 0x00, 0x00, 0x00, // host_timeout_ms 0
      0x0f, // capabilities all
      0x20, // state_size 32
      0x03, 0x75, 0x6e, 0x6f, // name "uno"
      0x3a, 0x00, 0xf7,
    );
    const msg = examples.find((m) => m.type === 'hello' && m.name === 'uno')!;
    expect(encodeFrame(msg)).toEqual(frame);
    expect(decodeOk(frame)).toEqual(msg);
  });
});

describe('round trip', () => {
  it.each(examples.map((m) => [m.type, m] as const))('%s', (_type, msg) => {
    const frame = encodeFrame(msg);
    expect(frame[0]).toBe(0xf0);
    expect(frame[1]).toBe(0x0d);
    expect(frame[2]).toBe(0x01);
    expect(frame[3]).toBe(MESSAGE_TYPE_NUMBERS[msg.type]);
    expect(frame[frame.length - 1]).toBe(0xf7);
    expect(frame.length - 2).toBeLessThanOrEqual(MAX_BODY);
    for (const b of frame.subarray(1, -1)) expect(b).toBeLessThanOrEqual(0x7f);
    expect(decodeOk(frame)).toEqual(msg);
    // decodeBody works on the bytes between F0 and F7.
    expect(decodeBody(frame.subarray(1, -1))).toEqual({ ok: true, message: msg });
  });

  it('the longest HELLO fills the 64-byte body exactly', () => {
    const longest = examples.find((m) => m.type === 'hello' && m.name.length === MAX_NAME_LENGTH)!;
    expect(encodeFrame(longest).length - 2).toBe(MAX_BODY);
  });

  it('encodes cause lists in any order and decodes them in bit order', () => {
    const frame = encodeFrame({ type: 'awake', sleptMs: 5, wakeCauses: ['pin', 'timer', 'pin'] });
    expect(decodeOk(frame)).toEqual({ type: 'awake', sleptMs: 5, wakeCauses: ['timer', 'pin'] });
  });

  it('ignores unknown bits in bit masks', () => {
    // AWAKE with wake_cause 0x7A: 0x02 serial plus unknown bits.
    expect(decodeOk(frameFromPayload(0x45, [0, 0, 0, 0, 0, 0x7a]))).toEqual({
      type: 'awake',
      sleptMs: 0,
      wakeCauses: ['serial'],
    });
    // PONG flags 0x70: no known bit.
    const pong = decodeOk(frameFromPayload(0x42, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x70, 0, 0, 0, 0, 0]));
    expect(pong).toMatchObject({ type: 'pong', seq: 1, leaseActive: false, sleepPending: false, stateValid: false, hostWasLost: false });
    // HELLO reset_cause 0x30, flags 0x78, capabilities 0x60: nothing known set.
    const hello = decodeOk(
      frameFromPayload(0x41, [1, 0, 0, 0, 0, 0, 0, 0x30, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0x60, 32, 0]),
    );
    expect(hello).toMatchObject({
      type: 'hello',
      resetCauses: [],
      stateSurvived: false,
      pinsRestored: false,
      reply: false,
      capabilities: { watchdog: false, sleep: false, state: false, pinRestore: false, beats: false },
    });
  });

  it('returns state data that does not alias the input frame', () => {
    const frame = encodeFrame({ type: 'state-data', offset: 0, data: bytes(1, 2) });
    const msg = decodeOk(frame);
    frame.fill(0);
    expect(msg).toEqual({ type: 'state-data', offset: 0, data: bytes(1, 2) });
  });

  it('restricts directions when asked', () => {
    const ping = encodeFrame({ type: 'ping', seq: 1, leaseMs: 1 });
    const pong = encodeFrame(examples.find((m) => m.type === 'pong')!);
    expect(decodeFrame(ping, { from: 'host' }).ok).toBe(true);
    expect(decodeFrame(pong, { from: 'device' }).ok).toBe(true);
    expect(decodeFrame(ping, { from: 'device' })).toMatchObject({ ok: false, error: { code: 'unknown-type', messageType: 0x02 } });
    expect(decodeFrame(pong, { from: 'host' })).toMatchObject({ ok: false, error: { code: 'unknown-type', messageType: 0x42 } });
  });
});

describe('encodeFrame rejects values the wire cannot carry', () => {
  const hello = examples.find((m) => m.type === 'hello')!;
  it.each<[string, unknown]>([
    ['seq 16384', { type: 'ping', seq: 16384, leaseMs: 0 }],
    ['seq -1', { type: 'ping', seq: -1, leaseMs: 0 }],
    ['lease 2^32', { type: 'ping', seq: 0, leaseMs: 0x100000000 }],
    ['lease 1.5', { type: 'ping', seq: 0, leaseMs: 1.5 }],
    ['state-read length 0', { type: 'state-read', offset: 0, length: 0 }],
    ['state-read length 17', { type: 'state-read', offset: 0, length: 17 }],
    ['state-read past the end', { type: 'state-read', offset: 20, length: 13 }],
    ['state-write empty', { type: 'state-write', offset: 0, data: bytes() }],
    ['state-write 17 bytes', { type: 'state-write', offset: 0, data: new Uint8Array(17) }],
    ['state-write past the end', { type: 'state-write', offset: 31, data: bytes(1, 2) }],
    ['state-data past the end', { type: 'state-data', offset: 32, data: bytes(1) }],
    ['config bad policy', { type: 'config-set', config: { ...config, policy: 'nap' } }],
    ['config watchdog 16384', { type: 'config', config: { ...config, watchdogMs: 16384 } }],
    ['config awake 2^32', { type: 'config', config: { ...config, awakeMs: 2 ** 32 } }],
    ['hello name too long', { ...hello, name: 'x'.repeat(MAX_NAME_LENGTH + 1) }],
    ['hello name 40 chars', { ...hello, name: 'x'.repeat(40) }],
    ['hello name non-ASCII', { ...hello, name: 'ünö' }],
    ['hello fwMajor 128', { ...hello, fwMajor: 128 }],
    ['hello unknown reset cause', { ...hello, resetCauses: ['cosmic-ray'] }],
    ['sleeping unknown wake source', { type: 'sleeping', durationMs: 0, wakeSources: ['alarm'] }],
    ['error unknown code', { type: 'error', code: 'too-long', offendingType: 0 }],
    ['error offendingType 128', { type: 'error', code: 'bad-crc', offendingType: 128 }],
  ])('%s', (_name, msg) => {
    expect(() => encodeFrame(msg as Message)).toThrowError(expect.objectContaining({ code: 'out-of-range' }));
  });

  it('throws unknown-type for an unknown message kind', () => {
    expect(() => encodeFrame({ type: 'reboot' } as unknown as Message)).toThrowError(
      expect.objectContaining({ code: 'unknown-type' }),
    );
  });
});

describe('decodeFrame rejects malformed frames', () => {
  const ping = (): Uint8Array => encodeFrame({ type: 'ping', seq: 300, leaseMs: 5000 });

  it('not-sysex: no F0, or missing F7', () => {
    expectReject(bytes(), 'not-sysex');
    expectReject(bytes(0x0d, 0x01, 0x01, 0x12, 0x00, 0xf7), 'not-sysex');
    expectReject(ping().subarray(0, -1), 'not-sysex');
    expectReject(bytes(0xf0), 'not-sysex');
  });

  it('wrong-sysex-id: another sysex (REPORT_FIRMWARE)', () => {
    expectReject(bytes(0xf0, 0x79, 0x02, 0x05, 0x41, 0x00, 0xf7), 'wrong-sysex-id');
    const other = ping();
    other[1] = 0x0c;
    expectReject(other, 'wrong-sysex-id');
  });

  it('too-short', () => {
    expectReject(bytes(0xf0, 0xf7), 'too-short');
    expectReject(bytes(0xf0, 0x0d, 0xf7), 'too-short');
    expectReject(bytes(0xf0, 0x0d, 0x01, 0x01, 0x12, 0xf7), 'too-short');
  });

  it('too-long: body over 64 bytes, even with a valid CRC', () => {
    // STATE_WRITE-like frame padded to a 65-byte body.
    const frame = frameFromPayload(0x04, new Array(MAX_BODY - 5 + 1).fill(0));
    expect(frame.length - 2).toBe(MAX_BODY + 1);
    expectReject(frame, 'too-long');
    // Exactly 64 is not too long (it fails later, on its length).
    expectReject(frameFromPayload(0x04, new Array(MAX_BODY - 5).fill(0)), 'bad-length');
  });

  it('not-7bit: a command byte inside the body', () => {
    const frame = ping();
    frame[6] = 0x88;
    expectReject(frame, 'not-7bit');
    const early = ping();
    early[5] = 0xf7;
    expectReject(early, 'not-7bit');
  });

  it('bad-version', () => {
    const error = expectReject(frameFromPayload(0x02, [0x2c, 0x02, 0x08, 0x27, 0, 0, 0], 2), 'bad-version');
    expect(error.messageType).toBe(0x02);
    expectReject(frameFromPayload(0x01, [], 0), 'bad-version');
  });

  it('bad-crc: wrong low septet, wrong high septet, high septet above 1', () => {
    const lo = ping();
    lo[11] ^= 0x01;
    expect(expectReject(lo, 'bad-crc').messageType).toBe(0x02);
    const hi = ping();
    hi[12] = 0x00;
    expectReject(hi, 'bad-crc');
    // Same value modulo 128 but the high septet is 3: still rejected.
    const wide = ping();
    wide[12] = 0x03;
    expectReject(wide, 'bad-crc');
    // A payload byte changed without fixing the CRC.
    const payload = ping();
    payload[4] = 0x2d;
    expectReject(payload, 'bad-crc');
  });

  it('out-of-range: a BEATS interval of 1-99 ms (the spec refuses it; 0 stops the beats)', () => {
    expectReject(frameFromPayload(0x07, [0, 0, 0, 0, 0, 0, 0, 99, 0, 0x30, 0x6a, 1, 0, 0]), 'out-of-range');
    expectReject(frameFromPayload(0x07, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0x30, 0x6a, 1, 0, 0]), 'out-of-range');
    expect(decodeOk(frameFromPayload(0x07, [0, 0, 0, 0, 0, 0, 0, 100, 0, 0x30, 0x6a, 1, 0, 0]))).toMatchObject({ type: 'beats', intervalMs: 100, forMs: 30000 });
    expect(() => encodeFrame({ type: 'beats', seq: 0, leaseMs: 0, intervalMs: 50, forMs: 1000 })).toThrowError(
      expect.objectContaining({ code: 'out-of-range' }),
    );
  });

  it('unknown-type', () => {
    for (const type of [0x00, 0x08, 0x3f, 0x40, 0x49, 0x7f]) {
      expect(expectReject(frameFromPayload(type, []), 'unknown-type').messageType).toBe(type);
    }
  });

  it('bad-length: payload longer or shorter than the type requires', () => {
    expectReject(frameFromPayload(0x01, [0]), 'bad-length');
    expectReject(frameFromPayload(0x02, [0x2c, 0x02, 0x08, 0x27, 0, 0]), 'bad-length');
    expectReject(frameFromPayload(0x02, [0x2c, 0x02, 0x08, 0x27, 0, 0, 0, 0]), 'bad-length');
    expectReject(frameFromPayload(0x03, [0]), 'bad-length');
    expectReject(frameFromPayload(0x46, new Array(17).fill(0)), 'bad-length');
    expectReject(frameFromPayload(0x47, [1]), 'bad-length');
    // STATE_WRITE whose length field says 2 but carries 3 bytes, or 1.
    expectReject(frameFromPayload(0x04, [0, 2, 1, 0, 2, 0, 3, 0]), 'bad-length');
    expectReject(frameFromPayload(0x04, [0, 2, 1, 0]), 'bad-length');
    expectReject(frameFromPayload(0x43, [0]), 'bad-length');
    // HELLO whose name length disagrees with the payload.
    const helloFixed = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x0f, 0, 0, 0, 0, 0, 0, 0x0f, 32];
    expectReject(frameFromPayload(0x41, [...helloFixed, 3, 0x41, 0x42]), 'bad-length');
    expectReject(frameFromPayload(0x41, [...helloFixed, 1, 0x41, 0x42]), 'bad-length');
    expectReject(frameFromPayload(0x41, helloFixed), 'bad-length');
    expect(decodeFrame(frameFromPayload(0x41, [...helloFixed, 2, 0x41, 0x42]))).toMatchObject({
      ok: true,
      message: { type: 'hello', name: 'AB' },
    });
  });

  it('out-of-range: u32 top septet above 0x0F', () => {
    expectReject(frameFromPayload(0x02, [0, 0, 0, 0, 0, 0, 0x10]), 'out-of-range');
    expect(decodeOk(frameFromPayload(0x02, [0, 0, 0, 0, 0, 0, 0x0f]))).toEqual({
      type: 'ping',
      seq: 0,
      leaseMs: 0xf0000000,
    });
  });

  it('out-of-range: bytes high septet above 0x01', () => {
    expectReject(frameFromPayload(0x04, [0, 1, 0x7f, 0x02]), 'out-of-range');
    expectReject(frameFromPayload(0x43, [0, 2, 0x7f, 0x01, 0x00, 0x40]), 'out-of-range');
  });

  it('out-of-range: state bounds', () => {
    expectReject(frameFromPayload(0x03, [0, 0]), 'out-of-range');
    expectReject(frameFromPayload(0x03, [0, 17]), 'out-of-range');
    expectReject(frameFromPayload(0x03, [17, 16]), 'out-of-range');
    expectReject(frameFromPayload(0x03, [127, 1]), 'out-of-range');
    expectReject(frameFromPayload(0x04, [0, 0]), 'out-of-range');
    expectReject(frameFromPayload(0x04, [31, 2, 1, 0, 2, 0]), 'out-of-range');
    expect(decodeOk(frameFromPayload(0x03, [16, 16]))).toEqual({ type: 'state-read', offset: 16, length: 16 });
  });

  it('out-of-range: unknown policy, unknown error code, non-printable name', () => {
    const cfg = [0x50, 0x0f, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    expectReject(frameFromPayload(0x05, cfg), 'out-of-range');
    expectReject(frameFromPayload(0x46, cfg), 'out-of-range');
    expectReject(frameFromPayload(0x47, [0, 2]), 'out-of-range');
    expectReject(frameFromPayload(0x47, [6, 2]), 'out-of-range');
    const helloFixed = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x0f, 0, 0, 0, 0, 0, 0, 0x0f, 32];
    expectReject(frameFromPayload(0x41, [...helloFixed, 1, 0x7f]), 'out-of-range');
    expectReject(frameFromPayload(0x41, [...helloFixed, 1, 0x1f]), 'out-of-range');
    const badPolicy = [...helloFixed];
    badPolicy[11] = 7;
    expectReject(frameFromPayload(0x41, [...badPolicy, 0]), 'out-of-range');
  });

  it('never throws on non-Uint8Array input', () => {
    expect(decodeFrame([0xf0, 0xf7] as unknown as Uint8Array)).toMatchObject({ ok: false, error: { code: 'not-sysex' } });
    expect(decodeFrame(undefined as unknown as Uint8Array).ok).toBe(false);
  });
});
