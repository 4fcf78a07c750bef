/**
 * Constants of the tether keepalive protocol, version 1 (see shared/PROTOCOL.md).
 */

/** Firmata START_SYSEX. */
export const START_SYSEX = 0xf0;
/** Firmata END_SYSEX. */
export const END_SYSEX = 0xf7;
/** tether's user-defined sysex id (Firmata reserves 0x01-0x0F for user commands). */
export const SYSEX_TETHER = 0x0d;

/** The protocol version carried in the VER byte. */
export const PROTOCOL_VERSION = 1;

/** Largest body (bytes between F0 and F7, including the 0D) a receiver accepts. */
export const MAX_BODY = 64;
/** Number of state registers in the no-init block. */
export const STATE_SIZE = 32;
/** Largest `length` of a STATE_READ / STATE_WRITE / STATE_DATA. */
export const MAX_STATE_CHUNK = 16;

/** Body bytes that are not payload: `0D VER TYPE` and `CRC_LO CRC_HI`. */
export const BODY_OVERHEAD = 5;
/** Smallest valid body: `0D VER TYPE CRC_LO CRC_HI`. */
export const MIN_BODY = BODY_OVERHEAD;
/** Largest payload that fits in MAX_BODY. */
export const MAX_PAYLOAD = MAX_BODY - BODY_OVERHEAD;

/** Largest unsigned values of the field encodings. */
export const MAX_U7 = 0x7f;
export const MAX_U14 = 0x3fff;
export const MAX_U32 = 0xffffffff;

/**
 * Fixed part of the HELLO payload: fw_major u7, fw_minor u7, boot_id u32, reset_cause u7,
 * flags u7, watchdog_ms u14, policy u7, host_timeout_ms u32, capabilities u7, state_size u7.
 */
export const HELLO_FIXED_PAYLOAD = 1 + 1 + 5 + 1 + 1 + 2 + 1 + 5 + 1 + 1;
/**
 * Longest HELLO `name` that keeps the body within MAX_BODY:
 * 64 - 5 (overhead) - 19 (fixed fields) - 1 (str length) = 39.
 */
export const MAX_NAME_LENGTH = MAX_PAYLOAD - HELLO_FIXED_PAYLOAD - 1;

/** Message type numbers, host -> device (0x01-0x3F). */
export const MessageType = {
  HELLO_REQUEST: 0x01,
  PING: 0x02,
  STATE_READ: 0x03,
  STATE_WRITE: 0x04,
  CONFIG_SET: 0x05,
  CONFIG_GET: 0x06,
  /** A PING that also asks the device to send BEATs (devices with the beats capability). */
  BEATS: 0x07,
  /** Message type numbers, device -> host (0x40-0x7F). */
  HELLO: 0x41,
  PONG: 0x42,
  STATE_DATA: 0x43,
  SLEEPING: 0x44,
  AWAKE: 0x45,
  CONFIG: 0x46,
  ERROR: 0x47,
  /** The device's own heartbeat, asked for by BEATS: PONG's fields. */
  BEAT: 0x48,
} as const;
export type MessageTypeNumber = (typeof MessageType)[keyof typeof MessageType];

/** Host -> device types are 0x01-0x3F, device -> host 0x40-0x7F. */
export const FIRST_DEVICE_TYPE = 0x40;

/** HELLO `reset_cause` bits, as in the AVR MCUSR. */
export const ResetCauseBit = {
  POWER_ON: 0x01,
  EXTERNAL: 0x02,
  BROWN_OUT: 0x04,
  WATCHDOG: 0x08,
} as const;

/** HELLO `flags` bits. */
export const HelloFlag = {
  STATE_SURVIVED: 0x01,
  PINS_RESTORED: 0x02,
  REPLY: 0x04,
} as const;

/** HELLO `capabilities` bits. */
export const CapabilityBit = {
  WATCHDOG: 0x01,
  SLEEP: 0x02,
  STATE: 0x04,
  PIN_RESTORE: 0x08,
  BEATS: 0x10,
} as const;

/** The shortest BEATS `interval_ms` a device takes (0 stops the beats; 1-99 is refused). */
export const MIN_BEAT_INTERVAL_MS = 100;

/** PONG (and BEAT) `flags` bits. */
export const PongFlag = {
  LEASE_ACTIVE: 0x01,
  SLEEP_PENDING: 0x02,
  STATE_VALID: 0x04,
  HOST_WAS_LOST: 0x08,
} as const;

/** SLEEPING `wake_sources` and AWAKE `wake_cause` bits. */
export const WakeBit = {
  TIMER: 0x01,
  SERIAL: 0x02,
  PIN: 0x04,
} as const;

/** `policy` values. */
export const PolicyValue = {
  STAY: 0,
  SLEEP: 1,
  RESET: 2,
} as const;

/** ERROR `code` values. */
export const ErrorCodeValue = {
  BAD_VERSION: 1,
  BAD_CRC: 2,
  UNKNOWN_TYPE: 3,
  BAD_LENGTH: 4,
  OUT_OF_RANGE: 5,
} as const;

/**
 * The shortest watchdog period a host may set (0 turns it off): twice the longest pass of the
 * AVR firmware's main loop, which kicks it once per pass. A CONFIG_SET with 1..249 is refused
 * with ERROR out-of-range.
 */
export const WATCHDOG_MIN_MS = 250;
/** The watchdog periods a host may set; other values of at least WATCHDOG_MIN_MS round down to one. */
export const WATCHDOG_STEPS_MS = [250, 500, 1000, 2000, 4000, 8000] as const;

/** The period a device applies for a requested `watchdog_ms`, or null when it refuses it. */
export function effectiveWatchdogMs(requestedMs: number): number | null {
  if (requestedMs === 0) return 0;
  if (requestedMs < WATCHDOG_MIN_MS) return null;
  let out: number = WATCHDOG_MIN_MS;
  for (const step of WATCHDOG_STEPS_MS) if (requestedMs >= step) out = step;
  return out;
}
