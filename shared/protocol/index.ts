export * from './constants.ts';
export { crc8 } from './crc8.ts';
export { ProtocolError, PROTOCOL_ERROR_CODES, type ProtocolErrorCode } from './errors.ts';
export { SeptetReader, SeptetWriter, type ReadResult } from './septets.ts';
export * from './messages.ts';
export { encodeFrame, encodePayload, encodePingFrame, encodePingInto, frameFromPayload, MESSAGE_TYPE_NUMBERS, PING_FRAME_LENGTH } from './encode.ts';
export { decodeBody, decodeFrame, pongMessage, readPongBody, type DecodeOptions, type DecodeResult, type PongFields } from './decode.ts';
export { FrameSplitter, type FrameSplitterOptions, type SplitterEvent, type SplitterSink } from './frame-splitter.ts';
export { KeepaliveFrameParser, type KeepaliveFrameParserOptions } from './frame-parser.ts';
