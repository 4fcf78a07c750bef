/**
 * Message -> frame encoding. Validates every field and throws ProtocolError('out-of-range')
 * on a value the wire cannot carry (a programming error on the sending side).
 */
import {
  END_SYSEX,
  HelloFlag,
  MAX_BODY,
  MAX_NAME_LENGTH,
  MAX_STATE_CHUNK,
  MAX_U7,
  MessageType,
  MIN_BEAT_INTERVAL_MS,
  PongFlag,
  PROTOCOL_VERSION,
  START_SYSEX,
  STATE_SIZE,
  SYSEX_TETHER,
} from './constants.ts';
import { crc8 } from './crc8.ts';
import { ProtocolError } from './errors.ts';
import {
  CAPABILITY_BITS,
  DEVICE_ERROR_CODES,
  POLICY_VALUES,
  RESET_CAUSE_BITS,
  WAKE_SOURCE_BITS,
  type Capabilities,
  type DeviceConfig,
  type Message,
  type MessageKind,
  type Policy,
} from './messages.ts';
import { SeptetWriter } from './septets.ts';

/** The wire TYPE number of each message kind. */
export const MESSAGE_TYPE_NUMBERS: Readonly<Record<MessageKind, number>> = {
  'hello-request': MessageType.HELLO_REQUEST,
  ping: MessageType.PING,
  beats: MessageType.BEATS,
  'state-read': MessageType.STATE_READ,
  'state-write': MessageType.STATE_WRITE,
  'config-set': MessageType.CONFIG_SET,
  'config-get': MessageType.CONFIG_GET,
  hello: MessageType.HELLO,
  pong: MessageType.PONG,
  beat: MessageType.BEAT,
  'state-data': MessageType.STATE_DATA,
  sleeping: MessageType.SLEEPING,
  awake: MessageType.AWAKE,
  config: MessageType.CONFIG,
  error: MessageType.ERROR,
};

function outOfRange(message: string): ProtocolError {
  return new ProtocolError('out-of-range', message);
}

function policyValue(policy: Policy): number {
  const value = Object.hasOwn(POLICY_VALUES, policy) ? POLICY_VALUES[policy] : undefined;
  if (value === undefined) throw outOfRange(`unknown policy ${JSON.stringify(policy)}`);
  return value;
}

/** OR of the bits of `names`, each of which must appear in `table`. */
function bitMask<N extends string>(field: string, names: readonly N[], table: ReadonlyArray<readonly [N, number]>): number {
  if (!Array.isArray(names)) throw outOfRange(`${field} must be an array`);
  let mask = 0;
  for (const name of names) {
    const entry = table.find(([n]) => n === name);
    if (!entry) throw outOfRange(`${field}: unknown value ${JSON.stringify(name)}`);
    mask |= entry[1];
  }
  return mask;
}

function flags(pairs: ReadonlyArray<readonly [unknown, number]>): number {
  let mask = 0;
  for (const [on, bit] of pairs) if (on === true) mask |= bit;
  return mask;
}

function capabilityMask(capabilities: Capabilities): number {
  if (typeof capabilities !== 'object' || capabilities === null) throw outOfRange('capabilities must be an object');
  return flags(CAPABILITY_BITS.map(([key, bit]) => [capabilities[key], bit] as const));
}

function checkStateRange(offset: number, length: number): void {
  if (!Number.isInteger(length) || length < 1 || length > MAX_STATE_CHUNK) {
    throw outOfRange(`state length must be 1..${MAX_STATE_CHUNK}, got ${String(length)}`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + length > STATE_SIZE) {
    throw outOfRange(`state offset ${String(offset)} + length ${length} exceeds STATE_SIZE ${STATE_SIZE}`);
  }
}

function writeStateData(w: SeptetWriter, offset: number, data: Uint8Array): void {
  if (!(data instanceof Uint8Array)) throw outOfRange('state data must be a Uint8Array');
  checkStateRange(offset, data.length);
  w.u7(offset, 'offset').u7(data.length, 'length').bytesField(data, 'data');
}

function writeConfig(w: SeptetWriter, config: DeviceConfig): void {
  if (typeof config !== 'object' || config === null) throw outOfRange('config must be an object');
  w.u14(config.watchdogMs, 'watchdogMs')
    .u7(policyValue(config.policy), 'policy')
    .u32(config.hostTimeoutMs, 'hostTimeoutMs')
    .u32(config.sleepMs, 'sleepMs')
    .u32(config.awakeMs, 'awakeMs');
}

/** Writes the payload fields of `msg` (after VER TYPE). */
function writePayload(w: SeptetWriter, msg: Message): void {
  switch (msg.type) {
    case 'hello-request':
    case 'config-get':
      return;
    case 'ping':
      w.u14(msg.seq, 'seq').u32(msg.leaseMs, 'leaseMs');
      return;
    case 'beats':
      if (msg.intervalMs !== 0 && msg.intervalMs < MIN_BEAT_INTERVAL_MS) {
        throw outOfRange(`intervalMs must be 0 or at least ${MIN_BEAT_INTERVAL_MS}, got ${String(msg.intervalMs)}`);
      }
      w.u14(msg.seq, 'seq').u32(msg.leaseMs, 'leaseMs').u14(msg.intervalMs, 'intervalMs').u32(msg.forMs, 'forMs');
      return;
    case 'state-read':
      w.u7(msg.offset, 'offset').u7(msg.length, 'length');
      checkStateRange(msg.offset, msg.length);
      return;
    case 'state-write':
    case 'state-data':
      writeStateData(w, msg.offset, msg.data);
      return;
    case 'config-set':
    case 'config':
      writeConfig(w, msg.config);
      return;
    case 'hello':
      w.u7(msg.fwMajor, 'fwMajor')
        .u7(msg.fwMinor, 'fwMinor')
        .u32(msg.bootId, 'bootId')
        .u7(bitMask('resetCauses', msg.resetCauses, RESET_CAUSE_BITS), 'resetCauses')
        .u7(
          flags([
            [msg.stateSurvived, HelloFlag.STATE_SURVIVED],
            [msg.pinsRestored, HelloFlag.PINS_RESTORED],
            [msg.reply, HelloFlag.REPLY],
          ]),
          'flags',
        )
        .u14(msg.watchdogMs, 'watchdogMs')
        .u7(policyValue(msg.policy), 'policy')
        .u32(msg.hostTimeoutMs, 'hostTimeoutMs')
        .u7(capabilityMask(msg.capabilities), 'capabilities')
        .u7(msg.stateSize, 'stateSize')
        .str(msg.name, MAX_NAME_LENGTH, 'name');
      return;
    case 'pong':
    case 'beat':
      w.u14(msg.seq, 'seq')
        .u32(msg.uptimeMs, 'uptimeMs')
        .u32(msg.bootId, 'bootId')
        .u7(
          flags([
            [msg.leaseActive, PongFlag.LEASE_ACTIVE],
            [msg.sleepPending, PongFlag.SLEEP_PENDING],
            [msg.stateValid, PongFlag.STATE_VALID],
            [msg.hostWasLost, PongFlag.HOST_WAS_LOST],
          ]),
          'flags',
        )
        .u32(msg.leaseRemainingMs, 'leaseRemainingMs');
      return;
    case 'sleeping':
      w.u32(msg.durationMs, 'durationMs').u7(bitMask('wakeSources', msg.wakeSources, WAKE_SOURCE_BITS), 'wakeSources');
      return;
    case 'awake':
      w.u32(msg.sleptMs, 'sleptMs').u7(bitMask('wakeCauses', msg.wakeCauses, WAKE_SOURCE_BITS), 'wakeCauses');
      return;
    case 'error': {
      const entry = DEVICE_ERROR_CODES.find(([name]) => name === msg.code);
      if (!entry) throw outOfRange(`unknown error code ${JSON.stringify(msg.code)}`);
      w.u7(entry[1], 'code').u7(msg.offendingType, 'offendingType');
      return;
    }
    default: {
      const unknown: never = msg;
      throw new ProtocolError('unknown-type', `unknown message type ${JSON.stringify((unknown as { type?: unknown }).type)}`);
    }
  }
}

/**
 * Builds a full frame `F0 0D VER TYPE payload CRC_LO CRC_HI F7` around raw septets, computing
 * the CRC. Low level: checks nothing (tests and tools use it to craft frames, valid or not).
 */
export function frameFromPayload(
  typeNumber: number,
  payload: ArrayLike<number>,
  version: number = PROTOCOL_VERSION,
): Uint8Array {
  const n = payload.length;
  const frame = new Uint8Array(n + 7);
  frame[0] = START_SYSEX;
  frame[1] = SYSEX_TETHER;
  frame[2] = version;
  frame[3] = typeNumber;
  for (let i = 0; i < n; i++) frame[4 + i] = payload[i]!;
  const crc = crc8(frame, 2, 4 + n);
  frame[4 + n] = crc & 0x7f;
  frame[5 + n] = crc >> 7;
  frame[6 + n] = END_SYSEX;
  return frame;
}

/** The payload septets of `msg` (the fields after VER TYPE, before the CRC). */
export function encodePayload(msg: Message): Uint8Array {
  if (typeof msg !== 'object' || msg === null) throw outOfRange('message must be an object');
  const w = new SeptetWriter();
  writePayload(w, msg);
  return w.toUint8Array();
}

/** Encodes `msg` as a full tether sysex frame, `F0 0D VER TYPE payload CRC_LO CRC_HI F7`. */
export function encodeFrame(msg: Message): Uint8Array {
  const payload = encodePayload(msg);
  const typeNumber = MESSAGE_TYPE_NUMBERS[msg.type];
  const frame = frameFromPayload(typeNumber, payload);
  const bodyLength = frame.length - 2;
  if (bodyLength > MAX_BODY) {
    throw outOfRange(`${msg.type} body would be ${bodyLength} bytes, at most ${MAX_BODY} allowed`);
  }
  // Defensive: every body byte must be a septet (the writer guarantees it).
  for (let i = 1; i < frame.length - 1; i++) {
    if (frame[i]! > MAX_U7) throw outOfRange(`internal: body byte ${i} is not 7-bit`);
  }
  return frame;
}

/**
 * PING (seq u14, leaseMs u32), the frame sent to every board every interval: the same bytes as
 * `encodeFrame({ type: 'ping', seq, leaseMs })`, written straight into one 14-byte array (no
 * message object, septet list or intermediate arrays), since a fleet sends thousands a second.
 */
export function encodePingFrame(seq: number, leaseMs: number): Uint8Array {
  return encodePingInto(new Uint8Array(PING_FRAME_LENGTH), seq, leaseMs);
}

/** Bytes of a PING frame. */
export const PING_FRAME_LENGTH = 14;

/**
 * encodePingFrame into `frame` (at least PING_FRAME_LENGTH bytes: a buffer the caller reuses
 * once the previous PING has left); returns `frame`. Checks as encodePingFrame.
 */
export function encodePingInto<T extends Uint8Array>(frame: T, seq: number, leaseMs: number): T {
  if (!Number.isInteger(seq) || seq < 0 || seq > 0x3fff) throw outOfRange(`seq must be an integer 0..${0x3fff}, got ${String(seq)}`);
  if (!Number.isInteger(leaseMs) || leaseMs < 0 || leaseMs > 0xffffffff) {
    throw outOfRange(`leaseMs must be an integer 0..${0xffffffff}, got ${String(leaseMs)}`);
  }
  if (frame.length < PING_FRAME_LENGTH) throw outOfRange(`a PING needs ${PING_FRAME_LENGTH} bytes, the buffer has ${frame.length}`);
  frame[0] = START_SYSEX;
  frame[1] = SYSEX_TETHER;
  frame[2] = PROTOCOL_VERSION;
  frame[3] = MESSAGE_TYPE_NUMBERS.ping;
  frame[4] = seq & 0x7f;
  frame[5] = (seq >> 7) & 0x7f;
  let v = leaseMs; // arithmetic, not bit operators: those are 32-bit signed
  for (let i = 0; i < 5; i++) {
    frame[6 + i] = v % 128;
    v = Math.floor(v / 128);
  }
  const crc = crc8(frame, 2, 11);
  frame[11] = crc & 0x7f;
  frame[12] = crc >> 7;
  frame[13] = END_SYSEX;
  return frame;
}
