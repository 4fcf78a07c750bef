import { readFile } from 'node:fs/promises';
import { IntelHexError, loadIntelHex } from './intel-hex.ts';
import type { BoardSpec } from './boards.ts';
import { FlashError } from './errors.ts';

/** An application image for flash address 0; gaps in the hex are 0xFF (erased flash). */
export interface FirmwareImage {
  bytes: Uint8Array;
  /** Where it came from, for messages. */
  source: string;
}

/** Parses Intel HEX and checks that it fits the board's application section. */
export function parseFirmwareImage(text: string, board: BoardSpec, source = 'image'): FirmwareImage {
  // Loaded into a buffer as large as any AVR's flash so that "too large" names the size.
  const flash = new Uint8Array(128 * 1024).fill(0xff);
  let end: number;
  try {
    end = loadIntelHex(text, flash);
  } catch (err) {
    if (err instanceof IntelHexError) throw new FlashError('bad-hex', `${source} is not a valid Intel HEX file: ${err.message}`, { cause: err });
    throw err;
  }
  if (end === 0) throw new FlashError('bad-hex', `${source} contains no data`);
  if (end > board.applicationBytes) {
    throw new FlashError(
      'bad-hex',
      `${source} is ${end} bytes but the ${board.name} has room for ${board.applicationBytes} (the rest of its flash is the bootloader)`,
    );
  }
  // An odd end is padded to a whole word, as flash is written in words.
  return { bytes: flash.slice(0, end + (end % 2)), source };
}

export async function readFirmwareImage(path: string, board: BoardSpec): Promise<FirmwareImage> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new FlashError('not-found', `firmware file not found: ${path}`, { cause: err });
    if (code === 'EISDIR') throw new FlashError('bad-hex', `${path} is a directory, not a hex file`, { cause: err });
    throw new FlashError('bad-hex', `cannot read firmware file ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseFirmwareImage(text, board, path);
}
