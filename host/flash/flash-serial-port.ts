import type { BoardSpec } from './boards.ts';
import { FlashError } from './errors.ts';
import type { FirmwareImage } from './firmware-image.ts';
import { programFirmware, type FlashProgress, type ProgramResult } from './program-firmware.ts';
import type { ProgrammerTimeouts } from './programmer.ts';
import { openSerialLink } from './serial-link.ts';

export interface FlashSerialPortOptions extends ProgrammerTimeouts {
  path: string;
  board: BoardSpec;
  image: FirmwareImage;
  verify?: boolean;
  onProgress?: (progress: FlashProgress) => void;
}

export interface FlashSerialPortResult extends ProgramResult {
  /** False on a pty (no modem lines): the board must be reset some other way. */
  resetByDtr: boolean;
}

/**
 * Opens the board's serial port (exclusively) at the bootloader's baud rate, resets the
 * board with DTR/RTS so its bootloader runs, programs the image and closes the port.
 */
export async function flashSerialPort(options: FlashSerialPortOptions): Promise<FlashSerialPortResult> {
  const link = await openSerialLink(options.path, options.board.baudRate);
  let resetByDtr = false;
  try {
    resetByDtr = await link.resetBoard();
    const result = await programFirmware(link, options.image, options);
    return { ...result, resetByDtr };
  } catch (err) {
    if (err instanceof FlashError && err.code === 'no-sync' && !resetByDtr) {
      throw new FlashError('no-sync', `${err.message} (${options.path} has no DTR line to reset the board, like a pty: press reset just before flashing)`, {
        cause: err,
      });
    }
    throw err;
  } finally {
    await link.close();
  }
}
