/**
 * Typed messages of the tether keepalive protocol (camelCase views of the wire fields).
 * Arrays of causes / sources are in canonical (bit) order.
 */
import { CapabilityBit, ErrorCodeValue, FIRST_DEVICE_TYPE, PolicyValue, ResetCauseBit, WakeBit } from './constants.ts';

export type Policy = 'stay' | 'sleep' | 'reset';
export type ResetCause = 'power-on' | 'external' | 'brown-out' | 'watchdog';
export type WakeSource = 'timer' | 'serial' | 'pin';
export type DeviceErrorCode = 'bad-version' | 'bad-crc' | 'unknown-type' | 'bad-length' | 'out-of-range';

export interface DeviceConfig {
  watchdogMs: number;
  policy: Policy;
  hostTimeoutMs: number;
  sleepMs: number;
  awakeMs: number;
}

export interface Capabilities {
  watchdog: boolean;
  sleep: boolean;
  state: boolean;
  pinRestore: boolean;
  /** Sends BEATs when asked (BEATS): the host need not PING it every interval. */
  beats: boolean;
}

export type HostMessage =
  | { type: 'hello-request' }
  | { type: 'ping'; seq: number; leaseMs: number }
  | { type: 'beats'; seq: number; leaseMs: number; intervalMs: number; forMs: number }
  | { type: 'state-read'; offset: number; length: number }
  | { type: 'state-write'; offset: number; data: Uint8Array }
  | { type: 'config-set'; config: DeviceConfig }
  | { type: 'config-get' };

/** The fields of a PONG, and of a BEAT (the same). */
export interface HeartbeatFields {
  seq: number;
  uptimeMs: number;
  bootId: number;
  leaseActive: boolean;
  sleepPending: boolean;
  stateValid: boolean;
  hostWasLost: boolean;
  leaseRemainingMs: number;
}

export type DeviceMessage =
  | {
      type: 'hello';
      fwMajor: number;
      fwMinor: number;
      bootId: number;
      resetCauses: ResetCause[];
      stateSurvived: boolean;
      pinsRestored: boolean;
      reply: boolean;
      watchdogMs: number;
      policy: Policy;
      hostTimeoutMs: number;
      capabilities: Capabilities;
      stateSize: number;
      name: string;
    }
  | ({ type: 'pong' } & HeartbeatFields)
  | ({ type: 'beat' } & HeartbeatFields)
  | { type: 'state-data'; offset: number; data: Uint8Array }
  | { type: 'sleeping'; durationMs: number; wakeSources: WakeSource[] }
  | { type: 'awake'; sleptMs: number; wakeCauses: WakeSource[] }
  | { type: 'config'; config: DeviceConfig }
  | { type: 'error'; code: DeviceErrorCode; offendingType: number };

export type Message = HostMessage | DeviceMessage;
export type MessageKind = Message['type'];
export type MessageOf<K extends MessageKind> = Extract<Message, { type: K }>;

/** Who sends a message: host -> device or device -> host. */
export type Sender = 'host' | 'device';

// ---- enumerations and bit fields, in canonical order -------------------------------------

export const POLICIES: readonly Policy[] = ['stay', 'sleep', 'reset'];
export const POLICY_VALUES: Readonly<Record<Policy, number>> = {
  stay: PolicyValue.STAY,
  sleep: PolicyValue.SLEEP,
  reset: PolicyValue.RESET,
};

/** Reset causes in bit order with their MCUSR bits. */
export const RESET_CAUSE_BITS: ReadonlyArray<readonly [ResetCause, number]> = [
  ['power-on', ResetCauseBit.POWER_ON],
  ['external', ResetCauseBit.EXTERNAL],
  ['brown-out', ResetCauseBit.BROWN_OUT],
  ['watchdog', ResetCauseBit.WATCHDOG],
];

/** Wake sources in bit order with their bits. */
export const WAKE_SOURCE_BITS: ReadonlyArray<readonly [WakeSource, number]> = [
  ['timer', WakeBit.TIMER],
  ['serial', WakeBit.SERIAL],
  ['pin', WakeBit.PIN],
];

export const CAPABILITY_BITS: ReadonlyArray<readonly [keyof Capabilities, number]> = [
  ['watchdog', CapabilityBit.WATCHDOG],
  ['sleep', CapabilityBit.SLEEP],
  ['state', CapabilityBit.STATE],
  ['pinRestore', CapabilityBit.PIN_RESTORE],
  ['beats', CapabilityBit.BEATS],
];

export const DEVICE_ERROR_CODES: ReadonlyArray<readonly [DeviceErrorCode, number]> = [
  ['bad-version', ErrorCodeValue.BAD_VERSION],
  ['bad-crc', ErrorCodeValue.BAD_CRC],
  ['unknown-type', ErrorCodeValue.UNKNOWN_TYPE],
  ['bad-length', ErrorCodeValue.BAD_LENGTH],
  ['out-of-range', ErrorCodeValue.OUT_OF_RANGE],
];

/** The sender of a message type: host -> device types are 0x01-0x3F, device -> host 0x40-0x7F. */
export function senderOfType(typeNumber: number): Sender {
  return typeNumber >= FIRST_DEVICE_TYPE ? 'device' : 'host';
}

const HOST_KINDS: ReadonlySet<string> = new Set<HostMessage['type']>([
  'hello-request',
  'ping',
  'beats',
  'state-read',
  'state-write',
  'config-set',
  'config-get',
]);

export function isHostMessage(message: Message): message is HostMessage {
  return HOST_KINDS.has(message.type);
}

export function isDeviceMessage(message: Message): message is DeviceMessage {
  return !HOST_KINDS.has(message.type);
}
