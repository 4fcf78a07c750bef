/**
 * The STK500 version 1 protocol as Optiboot speaks it (Atmel AVR061), as pure data:
 * command encoders and a response parser, no I/O and no timing.
 *
 * Every command ends with CRC_EOP (0x20); every answer is INSYNC (0x14), the command's
 * payload bytes, then OK (0x10). A bootloader that did not see a well-formed command
 * answers NOSYNC (0x15), or with Optiboot, nothing (it resets itself into the application).
 */

export const STK = {
  OK: 0x10,
  FAILED: 0x11,
  UNKNOWN: 0x12,
  NODEVICE: 0x13,
  INSYNC: 0x14,
  NOSYNC: 0x15,
  CRC_EOP: 0x20,
  GET_SYNC: 0x30,
  GET_PARAMETER: 0x41,
  ENTER_PROGMODE: 0x50,
  LEAVE_PROGMODE: 0x51,
  LOAD_ADDRESS: 0x55,
  PROG_PAGE: 0x64,
  READ_PAGE: 0x74,
  READ_SIGN: 0x75,
} as const;

/** Memory type byte of PROG_PAGE / READ_PAGE: 'F'lash. */
const MEMTYPE_FLASH = 0x46;
/** LOAD_ADDRESS carries a 16-bit word address: 128 KiB of flash at most. */
const MAX_BYTE_ADDRESS = 0x1ffff;
/** Block length is 16 bits big-endian; Optiboot reads only the low byte (so at most 256). */
export const MAX_BLOCK_BYTES = 256;

export interface Stk500Command {
  /** For messages: "GET_SYNC", "PROG_PAGE 0x0180". */
  name: string;
  bytes: Uint8Array;
  /** Bytes between INSYNC and OK in the answer. */
  answerBytes: number;
}

function command(name: string, bytes: number[], answerBytes = 0): Stk500Command {
  return { name, bytes: Uint8Array.from([...bytes, STK.CRC_EOP]), answerBytes };
}

const hex4 = (n: number) => `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;

export const getSync = (): Stk500Command => command('GET_SYNC', [STK.GET_SYNC]);
export const enterProgMode = (): Stk500Command => command('ENTER_PROGMODE', [STK.ENTER_PROGMODE]);
export const leaveProgMode = (): Stk500Command => command('LEAVE_PROGMODE', [STK.LEAVE_PROGMODE]);
export const readSignature = (): Stk500Command => command('READ_SIGN', [STK.READ_SIGN], 3);
export const getParameter = (parameter: number): Stk500Command =>
  command(`GET_PARAMETER 0x${parameter.toString(16)}`, [STK.GET_PARAMETER, parameter & 0xff], 1);

/** LOAD_ADDRESS takes a word address, little-endian; `byteAddress` must be even. */
export function loadAddress(byteAddress: number): Stk500Command {
  if (!Number.isInteger(byteAddress) || byteAddress < 0 || byteAddress > MAX_BYTE_ADDRESS || byteAddress % 2 !== 0) {
    throw new RangeError(`flash address must be even and 0-${hex4(MAX_BYTE_ADDRESS)}, not ${byteAddress}`);
  }
  const word = byteAddress >> 1;
  return command(`LOAD_ADDRESS ${hex4(byteAddress)}`, [STK.LOAD_ADDRESS, word & 0xff, word >> 8]);
}

function checkBlockLength(length: number): void {
  if (!Number.isInteger(length) || length < 1 || length > MAX_BLOCK_BYTES) {
    throw new RangeError(`block length must be 1-${MAX_BLOCK_BYTES}, not ${length}`);
  }
}

/** PROG_PAGE for flash at the last loaded address; `label` names the address in messages. */
export function progPage(data: Uint8Array, label = ''): Stk500Command {
  checkBlockLength(data.length);
  return command(`PROG_PAGE${label && ` ${label}`}`, [STK.PROG_PAGE, data.length >> 8, data.length & 0xff, MEMTYPE_FLASH, ...data]);
}

/** READ_PAGE of `length` flash bytes from the last loaded address. */
export function readPage(length: number, label = ''): Stk500Command {
  checkBlockLength(length);
  return command(`READ_PAGE${label && ` ${label}`}`, [STK.READ_PAGE, length >> 8, length & 0xff, MEMTYPE_FLASH], length);
}

export type AnswerParse =
  /** More bytes needed. */
  | { status: 'incomplete' }
  | { status: 'ok'; payload: Uint8Array }
  /** NOSYNC: the bootloader did not take the command as a command. */
  | { status: 'nosync' }
  /** INSYNC, payload, then FAILED: the bootloader refused. */
  | { status: 'failed' }
  /** Bytes no answer to this command can contain. */
  | { status: 'invalid'; reason: string };

const byteText = (b: number) => `0x${b.toString(16).padStart(2, '0')}`;

/**
 * Reads the answer to `cmd` from the bytes received since it was sent. Bytes after a
 * complete answer are not looked at (a caller may call this as bytes arrive).
 */
export function parseAnswer(cmd: Stk500Command, received: Uint8Array): AnswerParse {
  if (received.length === 0) return { status: 'incomplete' };
  const first = received[0]!;
  if (first === STK.NOSYNC) return { status: 'nosync' };
  if (first !== STK.INSYNC) return { status: 'invalid', reason: `expected INSYNC (0x14), got ${byteText(first)}` };
  const end = 1 + cmd.answerBytes;
  if (received.length <= end) return { status: 'incomplete' };
  const last = received[end]!;
  if (last === STK.OK) return { status: 'ok', payload: received.slice(1, end) };
  if (last === STK.FAILED) return { status: 'failed' };
  return { status: 'invalid', reason: `expected OK (0x10) after ${cmd.answerBytes} byte(s), got ${byteText(last)}` };
}

/** Whether `received` holds a GET_SYNC answer (INSYNC OK) anywhere: noise before it is allowed. */
export function findSyncAnswer(received: Uint8Array): number {
  for (let i = 0; i + 1 < received.length; i++) {
    if (received[i] === STK.INSYNC && received[i + 1] === STK.OK) return i;
  }
  return -1;
}

/** Drops leading INSYNC OK pairs (late answers to GET_SYNC) from `received`. */
export function skipSyncAnswers(received: Uint8Array): Uint8Array {
  let i = 0;
  while (i + 1 < received.length && received[i] === STK.INSYNC && received[i + 1] === STK.OK) i += 2;
  return i === 0 ? received : received.subarray(i);
}
