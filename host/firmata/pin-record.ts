/**
 * What the host has told a board to do, kept so it can be replayed after the board
 * forgets it (power cycle) and checked after the board says it kept it (watchdog reset).
 */
export interface PinRecord {
  /** Firmata pin mode by pin number. */
  modes: Map<number, number>;
  /** Last DIGITAL_MESSAGE value per port (8 pins each), with the pins written by SET_DIGITAL_PIN_VALUE folded in. */
  digitalPorts: Map<number, number>;
  /** Last PWM / analog-write value by pin. */
  analogWrites: Map<number, number>;
  /** Digital ports with reporting on. */
  digitalReporting: Set<number>;
  /** Analog channels with reporting on. */
  analogReporting: Set<number>;
  samplingIntervalMs: number | null;
  /** State registers written by the host (offset -> byte). */
  registers: Map<number, number>;
}

export function emptyPinRecord(): PinRecord {
  return {
    modes: new Map(),
    digitalPorts: new Map(),
    analogWrites: new Map(),
    digitalReporting: new Set(),
    analogReporting: new Set(),
    samplingIntervalMs: null,
    registers: new Map(),
  };
}

/** The Firmata configuration part of a record is empty (nothing to replay). */
export function isPinRecordEmpty(record: PinRecord): boolean {
  return (
    record.modes.size === 0 &&
    record.digitalPorts.size === 0 &&
    record.analogWrites.size === 0 &&
    record.digitalReporting.size === 0 &&
    record.analogReporting.size === 0 &&
    record.samplingIntervalMs === null
  );
}
