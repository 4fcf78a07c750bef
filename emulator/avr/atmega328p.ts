/** ATmega328P facts the emulator needs (datasheet values; data-space addresses). */
export const FLASH_BYTES = 32 * 1024;
export const SRAM_BYTES = 2048;
export const SRAM_START = 0x100;
export const EEPROM_BYTES = 1024;
export const FLASH_PAGE_BYTES = 128;
/** Word address of a 512-byte boot section (BOOTSZ=11 on an Uno: Optiboot lives here). */
export const BOOT_SECTION_WORD = 0x3f00;

export const REG = {
  SPMCSR: 0x57,
  SMCR: 0x53,
  MCUSR: 0x54,
  WDTCSR: 0x60,
  SREG: 0x5f,
} as const;

export const MCUSR_FLAG = {
  PORF: 0x01,
  EXTRF: 0x02,
  BORF: 0x04,
  WDRF: 0x08,
} as const;

export const OPCODE = {
  SLEEP: 0x9588,
  SPM: 0x95e8,
  SPM_Z_INC: 0x95f8,
} as const;

/** Interrupt vector addresses (as avr8js numbers them) that can end power-down sleep. */
export const POWER_DOWN_WAKE_VECTORS = [
  0x02, // INT0
  0x04, // INT1
  0x06, // PCINT0
  0x08, // PCINT1
  0x0a, // PCINT2
  0x0c, // WDT
];

export type SleepMode = 'idle' | 'adc-noise' | 'power-down' | 'power-save' | 'standby' | 'extended-standby';

export function sleepModeFromSmcr(smcr: number): SleepMode {
  switch ((smcr >> 1) & 0x7) {
    case 0:
      return 'idle';
    case 1:
      return 'adc-noise';
    case 2:
      return 'power-down';
    case 3:
      return 'power-save';
    case 6:
      return 'standby';
    case 7:
      return 'extended-standby';
    default:
      return 'idle'; // reserved encodings: treat as the lightest sleep
  }
}

/** Arduino pin number -> AVR port and bit on an Uno. */
export function unoPin(pin: number): { port: 'B' | 'C' | 'D'; bit: number } {
  if (!Number.isInteger(pin) || pin < 0 || pin > 19) throw new RangeError(`Uno has pins 0-19, not ${pin}`);
  if (pin < 8) return { port: 'D', bit: pin };
  if (pin < 14) return { port: 'B', bit: pin - 8 };
  return { port: 'C', bit: pin - 14 };
}
