/**
 * Why a flash failed. Each code is one thing a user can act on:
 * - 'not-found': the serial port or the hex file does not exist
 * - 'port-busy': another program holds the serial port
 * - 'port-error': the port exists but cannot be used (permissions, I/O error)
 * - 'bad-hex': the image is not valid Intel HEX or does not fit the board
 * - 'no-sync': nothing answered the bootloader's GET_SYNC (no bootloader running, wrong port or baud)
 * - 'wrong-signature': the chip is not the one the board has
 * - 'timeout': the bootloader stopped answering in the middle
 * - 'protocol': it answered with bytes STK500v1 does not allow there
 * - 'verify-failed': flash read back differs from the image
 */
export const FLASH_ERROR_CODES = [
  'not-found',
  'port-busy',
  'port-error',
  'bad-hex',
  'no-sync',
  'wrong-signature',
  'timeout',
  'protocol',
  'verify-failed',
] as const;
export type FlashErrorCode = (typeof FLASH_ERROR_CODES)[number];

/** A flash failure; `message` is one line meant for the user. */
export class FlashError extends Error {
  constructor(
    readonly code: FlashErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FlashError';
  }
}
