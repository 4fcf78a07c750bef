export { BOARDS, boardById, describeSignature, type BoardSpec } from './boards.ts';
export { linkFromTransport, type ByteLink } from './byte-link.ts';
export { FlashError, FLASH_ERROR_CODES, type FlashErrorCode } from './errors.ts';
export { parseFirmwareImage, readFirmwareImage, type FirmwareImage } from './firmware-image.ts';
export { flashSerialPort, type FlashSerialPortOptions, type FlashSerialPortResult } from './flash-serial-port.ts';
export { pagesOf, programFirmware, type FlashProgress, type ProgramOptions, type ProgramResult } from './program-firmware.ts';
export { DEFAULT_TIMEOUTS, Stk500v1Programmer, type ProgrammerOptions, type ProgrammerTimeouts } from './programmer.ts';
export { openSerialLink, type SerialLink } from './serial-link.ts';
export * as stk500v1 from './stk500v1.ts';
