import net from 'node:net';
import { Aedes } from 'aedes';
import { silentLogger, type Logger } from '../log/logger.ts';

export interface EmbeddedBrokerOptions {
  /** TCP port; 0 (the default) lets the OS pick a free one. */
  port?: number;
  /** Address to listen on; loopback by default. */
  host?: string;
  logger?: Logger;
}

export interface EmbeddedBroker {
  /** mqtt://host:port */
  readonly url: string;
  readonly port: number;
  /** Aedes speaks MQTT 3.1/3.1.1 only: a BrokerSession against it needs protocolVersion 4. */
  readonly protocolVersion: 4;
  /** Closes the listener, every client connection and the broker's own timers. */
  close(): Promise<void>;
  /** How many clients are connected (CONNECT accepted) right now. */
  clientCount(): number;
}

/**
 * An in-process MQTT 3.1.1 broker (Aedes, in-memory persistence) on a plain TCP listener,
 * for a host that has no broker of its own, and for tests. Aedes speaks MQTT 3.1/3.1.1
 * only: sessions against it must use protocolVersion 4.
 */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions = {}): Promise<EmbeddedBroker> {
  const { port = 0, host = '127.0.0.1' } = options;
  const logger = (options.logger ?? silentLogger).child({ component: 'embedded-broker' });
  const aedes = await Aedes.createBroker();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    aedes.handle(socket);
  });

  aedes.on('client', (client) => logger.debug({ clientId: client.id }, 'client connected'));
  aedes.on('clientDisconnect', (client) => logger.debug({ clientId: client.id }, 'client disconnected'));
  aedes.on('keepaliveTimeout', (client) => logger.info({ clientId: client.id }, 'client keepalive timeout'));
  aedes.on('clientError', (client, err) => logger.debug({ clientId: client.id, err: err.message }, 'client error'));
  aedes.on('connectionError', (client, err) => logger.debug({ clientId: client?.id, err: err.message }, 'connection error'));

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw err;
  }
  server.on('error', (err) => logger.error({ err: err.message }, 'listener error'));

  const address = server.address() as net.AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `mqtt://${urlHost}:${address.port}`;
  logger.info({ url }, 'embedded broker listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port: address.port,
    protocolVersion: 4,
    clientCount: () => aedes.connectedClients,
    close() {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        // Aedes closes the sockets of connected clients; a socket that never sent CONNECT is ours to end.
        for (const socket of sockets) socket.destroy();
        await serverClosed;
        logger.info({ url }, 'embedded broker closed');
      })();
      return closing;
    },
  };
}
