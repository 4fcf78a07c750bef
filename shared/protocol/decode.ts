/**
 * Frame -> message decoding. Never throws: every rejection is returned as a ProtocolError.
 *
 * Checks, in order: framing (`not-sysex`), sysex id (`wrong-sysex-id`), body size (`too-long`,
 * `too-short`), 7-bit cleanliness (`not-7bit`), VER (`bad-version`), CRC (`bad-crc`),
 * TYPE (`unknown-type`), payload length (`bad-length`), field values (`out-of-range`).
 */
import {
  END_SYSEX,
  HelloFlag,
  MAX_BODY,
  MAX_STATE_CHUNK,
  MessageType,
  MIN_BEAT_INTERVAL_MS,
  MIN_BODY,
  PongFlag,
  PROTOCOL_VERSION,
  START_SYSEX,
  STATE_SIZE,
  SYSEX_TETHER,
} from './constants.ts';
import { crc8 } from './crc8.ts';
import { ProtocolError, type ProtocolErrorCode } from './errors.ts';
import {
  CAPABILITY_BITS,
  DEVICE_ERROR_CODES,
  POLICIES,
  RESET_CAUSE_BITS,
  senderOfType,
  WAKE_SOURCE_BITS,
  type Capabilities,
  type DeviceConfig,
  type Message,
  type MessageOf,
  type Policy,
  type Sender,
} from './messages.ts';
import { SeptetReader, septetsToU32, type ReadResult } from './septets.ts';

export type DecodeResult = { ok: true; message: Message } | { ok: false; error: ProtocolError };

export interface DecodeOptions {
  /**
   * Accept only messages of this sender: a host decoding device traffic passes 'device',
   * a device (or its simulator) passes 'host'. Types of the other direction are then
   * 'unknown-type'. Default: both directions.
   */
  from?: Sender;
}

function fail(code: ProtocolErrorCode, message: string, messageType?: number): DecodeResult {
  return { ok: false, error: new ProtocolError(code, message, messageType) };
}

function hex(b: number): string {
  return `0x${b.toString(16).padStart(2, '0')}`;
}

/** Thrown only inside this module and caught by decodePayload: a ReadResult failure. */
class FieldFailure {
  constructor(readonly error: ProtocolError) {}
}

function get<T>(r: ReadResult<T>): T {
  if (!r.ok) throw new FieldFailure(r.error);
  return r.value;
}

function maskToList<N>(mask: number, table: ReadonlyArray<readonly [N, number]>): N[] {
  // Unknown bits are ignored (forward compatibility).
  return table.filter(([, bit]) => (mask & bit) !== 0).map(([name]) => name);
}

type PayloadDecoder = (r: SeptetReader, type: number) => Message;

function rangeError(type: number, message: string): FieldFailure {
  return new FieldFailure(new ProtocolError('out-of-range', message, type));
}

function readPolicy(r: SeptetReader, type: number): Policy {
  const value = get(r.u7('policy'));
  const policy = POLICIES[value];
  if (policy === undefined) throw rangeError(type, `policy ${value} is not 0 (stay), 1 (sleep) or 2 (reset)`);
  return policy;
}

function readConfig(r: SeptetReader, type: number): DeviceConfig {
  return {
    watchdogMs: get(r.u14('watchdog_ms')),
    policy: readPolicy(r, type),
    hostTimeoutMs: get(r.u32('host_timeout_ms')),
    sleepMs: get(r.u32('sleep_ms')),
    awakeMs: get(r.u32('awake_ms')),
  };
}

function checkStateRange(type: number, offset: number, length: number): void {
  if (length < 1 || length > MAX_STATE_CHUNK) {
    throw rangeError(type, `state length ${length} is not 1..${MAX_STATE_CHUNK}`);
  }
  if (offset + length > STATE_SIZE) {
    throw rangeError(type, `state offset ${offset} + length ${length} exceeds STATE_SIZE ${STATE_SIZE}`);
  }
}

/** offset u7, length u7, bytes[length]; the payload length must match `length`. */
function readStateData(r: SeptetReader, type: number): { offset: number; data: Uint8Array } {
  const offset = get(r.u7('offset'));
  const length = get(r.u7('length'));
  if (r.remaining !== 2 * length) {
    throw new FieldFailure(
      new ProtocolError('bad-length', `length ${length} needs ${2 * length} data septets, got ${r.remaining}`, type),
    );
  }
  checkStateRange(type, offset, length);
  return { offset, data: get(r.bytesField(length, 'data')) };
}

/** A PONG's or BEAT's payload (the same fields). */
function readHeartbeat(r: SeptetReader, beat: boolean): Message {
  const seq = get(r.u14('seq'));
  const uptimeMs = get(r.u32('uptime_ms'));
  const bootId = get(r.u32('boot_id'));
  const flags = get(r.u7('flags'));
  const leaseRemainingMs = get(r.u32('lease_remaining_ms'));
  return pongMessage({ beat, seq, uptimeMs, bootId, flags, leaseRemainingMs });
}

/** Fixed payload lengths (in septets); undefined for the variable-length types. */
const FIXED_PAYLOAD: Readonly<Record<number, number | undefined>> = {
  [MessageType.HELLO_REQUEST]: 0,
  [MessageType.PING]: 2 + 5,
  [MessageType.BEATS]: 2 + 5 + 2 + 5,
  [MessageType.STATE_READ]: 1 + 1,
  [MessageType.CONFIG_SET]: 2 + 1 + 5 + 5 + 5,
  [MessageType.CONFIG_GET]: 0,
  [MessageType.PONG]: 2 + 5 + 5 + 1 + 5,
  [MessageType.BEAT]: 2 + 5 + 5 + 1 + 5,
  [MessageType.SLEEPING]: 5 + 1,
  [MessageType.AWAKE]: 5 + 1,
  [MessageType.CONFIG]: 2 + 1 + 5 + 5 + 5,
  [MessageType.ERROR]: 1 + 1,
};

const DECODERS: ReadonlyMap<number, PayloadDecoder> = new Map<number, PayloadDecoder>([
  [MessageType.HELLO_REQUEST, () => ({ type: 'hello-request' })],
  [MessageType.PING, (r) => ({ type: 'ping', seq: get(r.u14('seq')), leaseMs: get(r.u32('lease_ms')) })],
  [
    MessageType.BEATS,
    (r, type) => {
      const seq = get(r.u14('seq'));
      const leaseMs = get(r.u32('lease_ms'));
      const intervalMs = get(r.u14('interval_ms'));
      const forMs = get(r.u32('for_ms'));
      if (intervalMs !== 0 && intervalMs < MIN_BEAT_INTERVAL_MS) {
        throw rangeError(type, `interval_ms ${intervalMs} is neither 0 nor at least ${MIN_BEAT_INTERVAL_MS}`);
      }
      return { type: 'beats', seq, leaseMs, intervalMs, forMs };
    },
  ],
  [
    MessageType.STATE_READ,
    (r, type) => {
      const offset = get(r.u7('offset'));
      const length = get(r.u7('length'));
      checkStateRange(type, offset, length);
      return { type: 'state-read', offset, length };
    },
  ],
  [MessageType.STATE_WRITE, (r, type) => ({ type: 'state-write', ...readStateData(r, type) })],
  [MessageType.CONFIG_SET, (r, type) => ({ type: 'config-set', config: readConfig(r, type) })],
  [MessageType.CONFIG_GET, () => ({ type: 'config-get' })],
  [
    MessageType.HELLO,
    (r, type) => {
      const fwMajor = get(r.u7('fw_major'));
      const fwMinor = get(r.u7('fw_minor'));
      const bootId = get(r.u32('boot_id'));
      const resetCause = get(r.u7('reset_cause'));
      const flags = get(r.u7('flags'));
      const watchdogMs = get(r.u14('watchdog_ms'));
      const policy = readPolicy(r, type);
      const hostTimeoutMs = get(r.u32('host_timeout_ms'));
      const caps = get(r.u7('capabilities'));
      const stateSize = get(r.u7('state_size'));
      const name = get(r.str('name'));
      const capabilities = Object.fromEntries(
        CAPABILITY_BITS.map(([key, bit]) => [key, (caps & bit) !== 0]),
      ) as unknown as Capabilities;
      return {
        type: 'hello',
        fwMajor,
        fwMinor,
        bootId,
        resetCauses: maskToList(resetCause, RESET_CAUSE_BITS),
        stateSurvived: (flags & HelloFlag.STATE_SURVIVED) !== 0,
        pinsRestored: (flags & HelloFlag.PINS_RESTORED) !== 0,
        reply: (flags & HelloFlag.REPLY) !== 0,
        watchdogMs,
        policy,
        hostTimeoutMs,
        capabilities,
        stateSize,
        name,
      };
    },
  ],
  [MessageType.PONG, (r) => readHeartbeat(r, false)],
  [MessageType.BEAT, (r) => readHeartbeat(r, true)],
  [MessageType.STATE_DATA, (r, type) => ({ type: 'state-data', ...readStateData(r, type) })],
  [
    MessageType.SLEEPING,
    (r) => {
      const durationMs = get(r.u32('duration_ms'));
      const wakeSources = maskToList(get(r.u7('wake_sources')), WAKE_SOURCE_BITS);
      return { type: 'sleeping', durationMs, wakeSources };
    },
  ],
  [
    MessageType.AWAKE,
    (r) => {
      const sleptMs = get(r.u32('slept_ms'));
      const wakeCauses = maskToList(get(r.u7('wake_cause')), WAKE_SOURCE_BITS);
      return { type: 'awake', sleptMs, wakeCauses };
    },
  ],
  [MessageType.CONFIG, (r, type) => ({ type: 'config', config: readConfig(r, type) })],
  [
    MessageType.ERROR,
    (r, type) => {
      const codeValue = get(r.u7('code'));
      const offendingType = get(r.u7('type'));
      const entry = DEVICE_ERROR_CODES.find(([, value]) => value === codeValue);
      if (!entry) throw rangeError(type, `error code ${codeValue} is not 1..5`);
      return { type: 'error', code: entry[0], offendingType };
    },
  ],
]);

/** Decodes the payload of a frame whose header and CRC have been checked. */
function decodePayload(type: number, payload: Uint8Array, options: DecodeOptions): DecodeResult {
  const decoder = DECODERS.get(type);
  if (decoder === undefined || (options.from !== undefined && senderOfType(type) !== options.from)) {
    return fail('unknown-type', `unknown message type ${hex(type)}`, type);
  }
  const fixed = FIXED_PAYLOAD[type];
  if (fixed !== undefined && payload.length !== fixed) {
    return fail('bad-length', `type ${hex(type)} needs a ${fixed}-septet payload, got ${payload.length}`, type);
  }
  const reader = new SeptetReader(payload, type);
  try {
    const message = decoder(reader, type);
    get(reader.end());
    return { ok: true, message };
  } catch (e) {
    if (e instanceof FieldFailure) return { ok: false, error: e.error };
    throw e;
  }
}

/**
 * Decodes a frame body: the bytes between F0 and F7, `0D VER TYPE payload CRC_LO CRC_HI`.
 * Never throws.
 */
export function decodeBody(body: Uint8Array, options: DecodeOptions = {}): DecodeResult {
  if (!(body instanceof Uint8Array)) return fail('not-sysex', 'body is not a Uint8Array');
  const n = body.length;
  if (n === 0) return fail('too-short', 'empty sysex body');
  if (body[0]! > 0x7f) return fail('not-7bit', `sysex id ${hex(body[0]!)} is not 7-bit`);
  if (body[0] !== SYSEX_TETHER) {
    return fail('wrong-sysex-id', `sysex id ${hex(body[0]!)} is not SYSEX_TETHER ${hex(SYSEX_TETHER)}`);
  }
  if (n > MAX_BODY) return fail('too-long', `body is ${n} bytes, at most ${MAX_BODY} allowed`);
  for (let i = 1; i < n; i++) {
    if (body[i]! > 0x7f) return fail('not-7bit', `body byte ${i} is ${hex(body[i]!)}, not 7-bit`);
  }
  if (n < MIN_BODY) return fail('too-short', `body is ${n} bytes, at least ${MIN_BODY} needed`);
  const type = body[2]!;
  if (body[1] !== PROTOCOL_VERSION) {
    return fail('bad-version', `protocol version ${body[1]}, expected ${PROTOCOL_VERSION}`, type);
  }
  const crcLo = body[n - 2]!;
  const crcHi = body[n - 1]!;
  const expected = crc8(body, 1, n - 2);
  if (crcHi > 0x01 || (crcLo | (crcHi << 7)) !== expected) {
    return fail('bad-crc', `CRC septets ${hex(crcLo)} ${hex(crcHi)}, expected CRC ${hex(expected)}`, type);
  }
  return decodePayload(type, body.subarray(3, n - 2), options);
}

/** A PONG's or BEAT's fields as numbers (the flags as their bits), filled in place by readPongBody. */
export interface PongFields {
  /** A BEAT (the device's own heartbeat), not a PONG. */
  beat: boolean;
  seq: number;
  uptimeMs: number;
  bootId: number;
  flags: number;
  leaseRemainingMs: number;
}

/** Body length of a PONG: 0D VER TYPE, its fixed payload, CRC_LO CRC_HI. */
const PONG_BODY = 3 + FIXED_PAYLOAD[MessageType.PONG]! + 2;

/**
 * The PONG fast path (every board answers one every interval, or sends a BEAT): if
 * `bytes[start, end)` is the body of a valid PONG or BEAT, fills `out` and returns true, with no
 * message or result object made; otherwise returns false and decodeBody tells what it is.
 * Accepts exactly what decodeBody accepts as a PONG or BEAT, with the same values
 * (test/unit/protocol-pong-fast-path.test.ts).
 */
export function readPongBody(bytes: Uint8Array, start: number, end: number, out: PongFields): boolean {
  if (end - start !== PONG_BODY) return false;
  const b = start;
  const type = bytes[b + 2];
  if (bytes[b] !== SYSEX_TETHER || bytes[b + 1] !== PROTOCOL_VERSION || (type !== MessageType.PONG && type !== MessageType.BEAT)) return false;
  for (let i = b + 1; i < end; i++) if (bytes[i]! > 0x7f) return false;
  const crcLo = bytes[end - 2]!;
  const crcHi = bytes[end - 1]!;
  if (crcHi > 0x01 || (crcLo | (crcHi << 7)) !== crc8(bytes, b + 1, end - 2)) return false;
  const p = b + 3;
  // u32 fields: a top septet above 0x0F is out of range.
  if (bytes[p + 6]! > 0x0f || bytes[p + 11]! > 0x0f || bytes[p + 17]! > 0x0f) return false;
  out.beat = type === MessageType.BEAT;
  out.seq = bytes[p]! | (bytes[p + 1]! << 7);
  out.uptimeMs = septetsToU32(bytes, p + 2);
  out.bootId = septetsToU32(bytes, p + 7);
  out.flags = bytes[p + 12]!;
  out.leaseRemainingMs = septetsToU32(bytes, p + 13);
  return true;
}

/** The PONG or BEAT message readPongBody's fields stand for (as decodeBody makes it). */
export function pongMessage(f: PongFields): MessageOf<'pong' | 'beat'> {
  return {
    type: f.beat ? 'beat' : 'pong',
    seq: f.seq,
    uptimeMs: f.uptimeMs,
    bootId: f.bootId,
    leaseActive: (f.flags & PongFlag.LEASE_ACTIVE) !== 0,
    sleepPending: (f.flags & PongFlag.SLEEP_PENDING) !== 0,
    stateValid: (f.flags & PongFlag.STATE_VALID) !== 0,
    hostWasLost: (f.flags & PongFlag.HOST_WAS_LOST) !== 0,
    leaseRemainingMs: f.leaseRemainingMs,
  };
}

/** Decodes a full frame `F0 0D VER TYPE payload CRC_LO CRC_HI F7`. Never throws. */
export function decodeFrame(frame: Uint8Array, options: DecodeOptions = {}): DecodeResult {
  if (!(frame instanceof Uint8Array)) return fail('not-sysex', 'frame is not a Uint8Array');
  if (frame.length === 0 || frame[0] !== START_SYSEX) {
    return fail('not-sysex', 'frame does not start with F0 (START_SYSEX)');
  }
  if (frame.length < 2 || frame[frame.length - 1] !== END_SYSEX) {
    return fail('not-sysex', 'frame does not end with F7 (END_SYSEX)');
  }
  return decodeBody(frame.subarray(1, frame.length - 1), options);
}
