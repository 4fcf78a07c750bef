import net from 'node:net';
import { rmSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { z } from 'zod';
import { BOARDS } from '../flash/boards.ts';
import { FlashError } from '../flash/errors.ts';
import { parseFirmwareImage } from '../flash/firmware-image.ts';
import type { Logger } from '../log/logger.ts';
import type { GatewayDevice } from '../gateway/gateway-device.ts';
import type { DeviceFlasher } from './device-flasher.ts';

/**
 * The daemon's local control socket (a unix socket, JSON lines), so `tether flash` can go
 * through a running daemon instead of fighting it for the port. One request per connection:
 *   -> {"op":"flash","port":"/dev/ttyACM0","hex":"<Intel HEX text>"}
 *   <- {"event":"progress","phase":"write","done":1024,"total":7730} ... then
 *   <- {"event":"done","bytes":7730,"ms":3100}  or  {"event":"error","code":"no-sync","message":"..."}
 */
const requestSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('flash'), port: z.string().min(1), hex: z.string().min(1).max(1_000_000) }),
]);

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

export async function startControlServer(path: string, devices: readonly GatewayDevice[], logger: Logger, flasher: DeviceFlasher): Promise<ControlServer> {
  rmSync(path, { force: true }); // a socket left by a killed daemon
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString();
      if (buffered.length > 2_000_000) return socket.destroy();
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      socket.removeAllListeners('data');
      void handle(buffered.slice(0, nl), socket);
    });
  });
  const send = (socket: net.Socket, message: object) => {
    if (!socket.destroyed) socket.write(`${JSON.stringify(message)}\n`);
  };
  const handle = async (line: string, socket: net.Socket) => {
    let request;
    try {
      request = requestSchema.parse(JSON.parse(line));
    } catch (err) {
      send(socket, { event: 'error', code: 'bad-request', message: `not a valid request: ${(err as Error).message.split('\n')[0]}` });
      return socket.end();
    }
    const device = devices.find((d) => d.settings.port === request.port || d.id === request.port);
    if (!device) {
      send(socket, { event: 'error', code: 'not-found', message: `the daemon has no device on ${request.port}` });
      return socket.end();
    }
    const started = performance.now();
    try {
      const image = parseFirmwareImage(request.hex, BOARDS.uno, 'image from tether flash');
      const result = await flasher.flash(device, image, (p) => send(socket, { event: 'progress', ...p }));
      send(socket, { event: 'done', bytes: image.bytes.length, ms: Math.round(performance.now() - started), verified: result.verified });
    } catch (err) {
      const code = err instanceof FlashError ? err.code : 'failed';
      logger.warn({ device: device.id, code, err: (err as Error).message }, 'flashing through the daemon failed');
      send(socket, { event: 'error', code, message: (err as Error).message });
    }
    socket.end();
  };
  // Only the daemon's user may ask it to flash a board: the socket is created 0600 whatever
  // the umask (listen() under a 077 umask, then chmod for an explicit mode).
  const umask = process.umask(0o077);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(umask);
  }
  await chmod(path, 0o600);
  logger.info({ path }, `control socket at ${path} (tether flash --daemon ${path})`);
  return {
    path,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(path, { force: true });
    },
  };
}
