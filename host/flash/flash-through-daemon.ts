import net from 'node:net';
import { FlashError, type FlashErrorCode } from './errors.ts';
import type { FirmwareImage } from './firmware-image.ts';
import type { FlashProgress } from './program-firmware.ts';

export interface DaemonFlashResult {
  bytes: number;
  ms: number;
  verified: boolean;
}

/**
 * Asks a running `tether daemon` (its control socket) to flash the board on `port`: the daemon
 * lends the port out, takes a "flashing" lease, and replays the board's state afterwards.
 */
export async function flashThroughDaemon(
  socketPath: string,
  port: string,
  image: FirmwareImage & { hexText: string },
  onProgress?: (p: FlashProgress) => void,
): Promise<DaemonFlashResult> {
  return await new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let buffered = '';
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      fn();
    };
    socket.once('error', (err: NodeJS.ErrnoException) =>
      finish(() =>
        reject(new FlashError('port-error', err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? `no tether daemon listening on ${socketPath}` : `control socket ${socketPath}: ${err.message}`)),
      ),
    );
    socket.on('connect', () => socket.write(`${JSON.stringify({ op: 'flash', port, hex: image.hexText })}\n`));
    socket.on('data', (chunk) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const message = JSON.parse(buffered.slice(0, nl)) as { event: string; [k: string]: unknown };
        buffered = buffered.slice(nl + 1);
        if (message.event === 'progress') onProgress?.(message as unknown as FlashProgress);
        else if (message.event === 'done') finish(() => resolve(message as unknown as DaemonFlashResult));
        else if (message.event === 'error') finish(() => reject(new FlashError(message.code as FlashErrorCode, `the daemon: ${String(message.message)}`)));
      }
    });
    socket.on('close', () => finish(() => reject(new FlashError('port-error', 'the daemon closed the control connection without an answer'))));
  });
}
