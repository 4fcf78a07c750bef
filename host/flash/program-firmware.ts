import { describeSignature, type BoardSpec } from './boards.ts';
import type { ByteLink } from './byte-link.ts';
import { FlashError } from './errors.ts';
import type { FirmwareImage } from './firmware-image.ts';
import { Stk500v1Programmer, type ProgrammerOptions } from './programmer.ts';
import { systemClock } from '../time/clock.ts';

export interface FlashProgress {
  phase: 'writing' | 'verifying';
  /** Image bytes written (or verified) so far. */
  done: number;
  total: number;
}

export interface ProgramOptions extends ProgrammerOptions {
  board: BoardSpec;
  /** Read every page back and compare. Default true. */
  verify?: boolean;
  onProgress?: (progress: FlashProgress) => void;
}

export interface ProgramResult {
  bytes: number;
  pages: number;
  verified: boolean;
  /** Milliseconds from the first GET_SYNC to LEAVE_PROGMODE answered. */
  durationMs: number;
}

/**
 * Writes `image` through an Optiboot (STK500v1) bootloader that is already running on
 * the other end of `link` (the caller opened the port and reset the board into it):
 * sync, check the signature, write every page, read every page back, leave programming
 * mode (the bootloader then starts the new application). The link stays open.
 *
 * This is the piece a process that already holds the board's port (the daemon) calls.
 */
export async function programFirmware(link: ByteLink, image: FirmwareImage, options: ProgramOptions): Promise<ProgramResult> {
  const { board, verify = true, onProgress } = options;
  const clock = options.clock ?? systemClock;
  const started = clock.now();
  const programmer = new Stk500v1Programmer(link, options);
  try {
    await programmer.sync();
    // READ_SIGN first: its answer tells itself apart from late answers to earlier GET_SYNCs.
    const signature = await programmer.readSignature();
    if (!board.signature.every((b, i) => signature[i] === b)) {
      throw new FlashError(
        'wrong-signature',
        `wrong signature: the chip says ${describeSignature(signature)}, an ${board.name} has ${describeSignature(board.signature)}`,
      );
    }
    await programmer.enterProgrammingMode();
    const pages = pagesOf(image.bytes, board.pageBytes);
    const total = image.bytes.length;
    onProgress?.({ phase: 'writing', done: 0, total });
    for (const page of pages) {
      await programmer.writePage(page.address, page.data);
      onProgress?.({ phase: 'writing', done: Math.min(page.address + board.pageBytes, total), total });
    }
    if (verify) {
      onProgress?.({ phase: 'verifying', done: 0, total });
      for (const page of pages) {
        const back = await programmer.readPage(page.address, page.data.length);
        const at = page.data.findIndex((b, i) => back[i] !== b);
        if (at >= 0) {
          const address = page.address + at;
          throw new FlashError(
            'verify-failed',
            `verify failed at 0x${address.toString(16).toUpperCase().padStart(4, '0')}: wrote 0x${hex2(page.data[at]!)}, read back 0x${hex2(back[at]!)}`,
          );
        }
        onProgress?.({ phase: 'verifying', done: Math.min(page.address + board.pageBytes, total), total });
      }
    }
    await programmer.leaveProgrammingMode();
    return { bytes: total, pages: pages.length, verified: verify, durationMs: clock.now() - started };
  } catch (err) {
    // The bootloader still answers: let it start the application now rather than after its timeout.
    if (err instanceof FlashError && (err.code === 'wrong-signature' || err.code === 'verify-failed')) {
      await programmer.leaveProgrammingMode().catch(() => {});
    }
    throw err;
  } finally {
    programmer.dispose();
  }
}

const hex2 = (b: number) => b.toString(16).toUpperCase().padStart(2, '0');

/** Whole pages covering the image; the last one is padded with 0xFF (erased flash). */
export function pagesOf(bytes: Uint8Array, pageBytes: number): Array<{ address: number; data: Uint8Array }> {
  const pages: Array<{ address: number; data: Uint8Array }> = [];
  for (let address = 0; address < bytes.length; address += pageBytes) {
    const data = new Uint8Array(pageBytes).fill(0xff);
    data.set(bytes.subarray(address, address + pageBytes));
    pages.push({ address, data });
  }
  return pages;
}
