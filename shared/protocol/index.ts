export * from './constants.ts';
export { crc8 } from './crc8.ts';
export { ProtocolError, PROTOCOL_ERROR_CODES, type ProtocolErrorCode } from './errors.ts';
export { SeptetReader, SeptetWriter, type ReadResult } from './septets.ts';
export * from './messages.ts';
export { encodeFrame, encodePayload, encodePingFrame, frameFromPayload, MESSAGE_TYPE_NUMBERS } from './encode.ts';
export { decodeBody, decodeFrame, type DecodeOptions, type DecodeResult } from './decode.ts';
export { FrameSplitter, type FrameSplitterOptions, type SplitterEvent } from './frame-splitter.ts';
export { KeepaliveFrameParser, type KeepaliveFrameParserOptions } from './frame-parser.ts';
