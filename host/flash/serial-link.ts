import { SerialTransport } from '../transport/serial-transport.ts';
import { TransportError } from '../transport/transport.ts';
import { linkFromTransport, type ByteLink } from './byte-link.ts';
import { FlashError } from './errors.ts';

/** avrdude's arduino programmer: DTR/RTS off this long, then on, then wait this long. */
export const RESET_LOW_MS = 250;
export const RESET_SETTLE_MS = 50;

/** A serial port opened (exclusively) for flashing: the same SerialTransport the keepalive link uses. */
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

/** Opens `path` at `baudRate` (serialport locks it exclusively), mapping failures to FlashErrors. */
export async function openSerialLink(path: string, baudRate: number): Promise<SerialLink> {
  // No presence polling: a flash is short, and a vanished port fails the next read anyway.
  const transport = new SerialTransport(path, { baudRate, presenceCheckMs: 0 });
  try {
    await transport.open();
  } catch (err) {
    throw openError(path, err);
  }
  const link = linkFromTransport(transport);
  const set = (level: boolean) => transport.setModemLines({ dtr: level, rts: level });
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
      await transport.flushInput();
      return low && high;
    },
    close: () => transport.close(),
  };
}

function openError(path: string, err: unknown): FlashError {
  const code = err instanceof TransportError ? err.code : 'io';
  const message = (err as Error).message ?? String(err);
  switch (code) {
    case 'busy':
      return new FlashError('port-busy', `serial port ${path} is busy: another program has it open (close the serial monitor, or stop the tether daemon)`, {
        cause: err,
      });
    case 'not-found':
      return new FlashError('not-found', `serial port ${path} does not exist (is the board plugged in?)`, { cause: err });
    case 'permission':
      return new FlashError('port-error', `no permission to open ${path} (on Linux, add yourself to the dialout group)`, { cause: err });
    default:
      return new FlashError('port-error', `cannot open serial port ${path}: ${message}`, { cause: err });
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
