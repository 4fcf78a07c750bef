/** What the programmer needs to know about a board and its bootloader. */
export interface BoardSpec {
  /** The `--board` name. */
  id: string;
  name: string;
  mcu: string;
  /** Device signature bytes the chip reports. */
  signature: readonly [number, number, number];
  /** Flash page size in bytes (the bootloader writes one page per PROG_PAGE). */
  pageBytes: number;
  /** Flash below the bootloader, where an application may go. */
  applicationBytes: number;
  /** The bootloader's baud rate. */
  baudRate: number;
}

export const BOARDS: Readonly<Record<string, BoardSpec>> = {
  uno: {
    id: 'uno',
    name: 'Arduino Uno',
    mcu: 'ATmega328P',
    signature: [0x1e, 0x95, 0x0f],
    pageBytes: 128,
    applicationBytes: 32 * 1024 - 512, // Optiboot occupies the top 512 bytes (0x7E00-0x7FFF)
    baudRate: 115200,
  },
};

export function boardById(id: string): BoardSpec | undefined {
  return Object.hasOwn(BOARDS, id) ? BOARDS[id] : undefined;
}

/** AVR parts a signature may name, so a mismatch can say what is on the other end. */
const KNOWN_SIGNATURES: Readonly<Record<string, string>> = {
  '1e950f': 'ATmega328P',
  '1e9514': 'ATmega328',
  '1e9516': 'ATmega328PB',
  '1e9406': 'ATmega168',
  '1e940b': 'ATmega168P',
  '1e930a': 'ATmega88',
  '1e9307': 'ATmega8',
  '1e9587': 'ATmega32U4',
  '1e9801': 'ATmega2560',
  '1e9703': 'ATmega1280',
  '1e9609': 'ATmega644',
  '1e9705': 'ATmega1284P',
};

/** "1E 95 0F (ATmega328P)", or just the bytes when the part is not known. */
export function describeSignature(signature: ArrayLike<number>): string {
  const bytes = Array.from(signature, (b) => b.toString(16).padStart(2, '0'));
  const part = KNOWN_SIGNATURES[bytes.join('')];
  const text = bytes.join(' ').toUpperCase();
  return part ? `${text} (${part})` : text;
}
