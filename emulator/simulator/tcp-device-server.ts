import net from 'node:net';
import { SimulatedDevice, type SimulatedDeviceOptions } from './simulated-device.ts';

export interface DeviceOnTcp {
  readonly device: SimulatedDevice;
  readonly port: number;
  /** `tcp://127.0.0.1:<port>`, for a daemon config or DeviceLink. */
  readonly target: string;
  close(): Promise<void>;
}

/**
 * A simulated board behind a serial-over-TCP bridge (as ser2net or ESP-Link expose one):
 * one client at a time, the board keeps running between connections.
 */
export async function serveDeviceOverTcp(options: SimulatedDeviceOptions & { port?: number } = {}): Promise<DeviceOnTcp> {
  const device = new SimulatedDevice(options);
  let current: net.Socket | null = null;
  const forward = (bytes: Buffer) => current?.write(bytes);
  device.on('data', forward);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    current?.destroy(); // a bridge serves one client: the newest wins
    current = socket;
    socket.setNoDelay(true);
    socket.on('data', (bytes) => device.write(bytes));
    socket.on('error', () => {});
    socket.on('close', () => {
      sockets.delete(socket);
      if (current === socket) current = null;
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  device.boot();
  return {
    device,
    port,
    target: `tcp://127.0.0.1:${port}`,
    async close() {
      device.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
