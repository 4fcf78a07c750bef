/** Why a frame (or a message to encode) was rejected. */
export type ProtocolErrorCode =
  | 'not-sysex'
  | 'wrong-sysex-id'
  | 'too-short'
  | 'too-long'
  | 'not-7bit'
  | 'bad-version'
  | 'bad-crc'
  | 'unknown-type'
  | 'bad-length'
  | 'out-of-range';

export const PROTOCOL_ERROR_CODES: readonly ProtocolErrorCode[] = [
  'not-sysex',
  'wrong-sysex-id',
  'too-short',
  'too-long',
  'not-7bit',
  'bad-version',
  'bad-crc',
  'unknown-type',
  'bad-length',
  'out-of-range',
];

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code: ProtocolErrorCode;
  /**
   * The TYPE byte of the offending frame, when the frame got far enough to have one
   * (what a device puts in ERROR's `type` field; 0 / undefined when unknown).
   */
  readonly messageType: number | undefined;

  constructor(code: ProtocolErrorCode, message: string, messageType?: number) {
    super(message);
    this.code = code;
    this.messageType = messageType;
  }
}
