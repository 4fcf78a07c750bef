export { EmulatedUno, type EmulatedUnoOptions, type EmulatorStats, type ResetCause, type RunMode } from './emulated-uno.ts';
export { BoardOnPty, type BoardOnPtyOptions } from './board-on-pty.ts';
export { PtyBridge, PtyBridgeError } from './pty-bridge.ts';
export { loadIntelHex, IntelHexError } from './intel-hex.ts';
