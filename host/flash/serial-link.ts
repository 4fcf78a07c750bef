import { stat } from 'node:fs/promises';
import { SerialPort } from 'serialport';
import { linkFromStream, type ByteLink } from './byte-link.ts';
import { FlashError } from './errors.ts';

/** avrdude's arduino programmer: DTR/RTS off this long, then on, then wait this long. */
export const RESET_LOW_MS = 250;
export const RESET_SETTLE_MS = 50;

/** A serial port opened (exclusively) for flashing. */
export interface SerialLink extends ByteLink {
  readonly path: string;
  /**
   * Pulses DTR/RTS the way the Uno's auto-reset circuit needs, so the bootloader starts.
   * A pty has no modem lines: the error it gives is ignored, as avrdude does.
   * Resolves whether the lines could be set.
   */
  resetBoard(): Promise<boolean>;
  close(): Promise<void>;
}

/** Opens `path` at `baudRate` with an exclusive lock, mapping failures to FlashErrors. */
export async function openSerialLink(path: string, baudRate: number): Promise<SerialLink> {
  try {
    await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new FlashError('not-found', `serial port ${path} does not exist (is the board plugged in?)`, { cause: err });
    throw openError(path, err);
  }
  const port = new SerialPort({ path, baudRate, autoOpen: false, lock: true });
  // Before open errors go to the callback; later ones surface as failed writes or timeouts.
  port.on('error', () => {});
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(openError(path, err)) : resolve())));
  const link = linkFromStream(port);
  const set = (level: boolean) =>
    new Promise<boolean>((resolve) => port.set({ dtr: level, rts: level }, (err) => resolve(!err)));
  return {
    path,
    write: link.write,
    onData: link.onData,
    async resetBoard() {
      const low = await set(false);
      await sleep(RESET_LOW_MS);
      const high = await set(true);
      await sleep(RESET_SETTLE_MS);
      // Whatever the application said before the reset is not for us.
      await new Promise<void>((resolve) => port.flush(() => resolve()));
      return low && high;
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (!port.isOpen) return resolve();
        port.close(() => resolve());
      }),
  };
}

function openError(path: string, err: unknown): FlashError {
  const message = (err as Error).message ?? String(err);
  const code = (err as { code?: unknown }).code;
  if (code === 'EBUSY' || /Cannot lock port|resource busy|temporarily unavailable/i.test(message)) {
    return new FlashError('port-busy', `serial port ${path} is busy: another program has it open (close the serial monitor, or stop the tether daemon)`, {
      cause: err,
    });
  }
  if (code === 'ENOENT' || code === 'ENXIO' || code === 'ENODEV' || /No such file|No such device/i.test(message)) {
    return new FlashError('not-found', `serial port ${path} does not exist (is the board plugged in?)`, { cause: err });
  }
  if (code === 'EACCES' || code === 'EPERM' || /Permission denied|not permitted/i.test(message)) {
    return new FlashError('port-error', `no permission to open ${path} (on Linux, add yourself to the dialout group)`, { cause: err });
  }
  return new FlashError('port-error', `cannot open serial port ${path}: ${message}`, { cause: err });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
