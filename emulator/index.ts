// tether/emulator: boards for tests, benchmarks and the demo, apart from the product
// (as node-serialport ships its mock binding as a package of its own). Importing 'tether'
// never loads this part (nor avr8js).
export { EmulatedUno, type EmulatedUnoOptions, type EmulatorStats, type ResetCause, type RunMode } from './avr/emulated-uno.ts';
export { BoardOnPty, type BoardOnPtyOptions } from './avr/board-on-pty.ts';
export { BoardOnTcp, type BoardOnTcpOptions, PORT_IN_USE_MESSAGE } from './avr/board-on-tcp.ts';
export { AUTO_RESET_QUIET_MS, type SerialUnoOptions } from './avr/serial-uno.ts';
export { PtyBridge, PtyBridgeError } from './avr/pty-bridge.ts';
export { SimulatedDevice, type SimulatedDeviceOptions } from './simulator/simulated-device.ts';
export { EspruinoBoard, type EspruinoBoardOptions } from './espruino/espruino-board.ts';
export { EspruinoOnPty } from './espruino/espruino-on-pty.ts';
export { ManualClock } from './testing/manual-clock.ts';
export { RecordingLogger, type LogRecord } from './testing/recording-logger.ts';
export { serveDeviceOverTcp, type DeviceOnTcp } from './simulator/tcp-device-server.ts';
