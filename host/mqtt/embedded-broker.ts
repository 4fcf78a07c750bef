import { timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { Aedes } from 'aedes';
import { silentLogger, type Logger } from '../log/logger.ts';
import { MqttPacketSizeLimit } from './mqtt-packet-size-limit.ts';
import { listen } from '../net/listen.ts';

export interface EmbeddedBrokerOptions {
  /** TCP port; 0 (the default) lets the OS pick a free one. */
  port?: number;
  /** Address to listen on; loopback by default. */
  host?: string;
  /** When given, only these users may connect (username -> password); otherwise anyone on the host. */
  users?: Record<string, string>;
  /** Largest MQTT packet accepted (default 256 KiB); a client announcing a bigger one is disconnected. */
  maxPacketBytes?: number;
  logger?: Logger;
}

export const DEFAULT_MAX_PACKET_BYTES = 256 * 1024;

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
  const users = options.users;
  if (users) {
    aedes.authenticate = (client, username, password, callback) => {
      const ok = username !== undefined && Object.hasOwn(users, username) && sameSecret(users[username]!, password);
      if (!ok) logger.warn({ clientId: client.id, username }, 'embedded broker: refused a client with a wrong username or password');
      callback(null, ok);
    };
  }
  aedes.authorizeForward = (_client, packet) => clearRetainUnlessReplay(packet);
  const maxPacketBytes = options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // Aedes buffers a whole packet before looking at it: refuse oversized ones on their header.
    const limit = new MqttPacketSizeLimit(maxPacketBytes);
    limit.on('error', (err) => {
      logger.warn({ remote: socket.remoteAddress, err: err.message }, 'embedded broker: disconnected a client');
      socket.destroy();
    });
    socket.on('error', () => {});
    // Aedes reads the checked bytes and writes to the socket; destroying one side destroys both.
    aedes.handle(Duplex.from({ readable: limit, writable: socket }));
    socket.pipe(limit);
  });

  aedes.on('client', (client) => logger.debug({ clientId: client.id }, 'client connected'));
  aedes.on('clientDisconnect', (client) => logger.debug({ clientId: client.id }, 'client disconnected'));
  aedes.on('keepaliveTimeout', (client) => logger.info({ clientId: client.id }, 'client keepalive timeout'));
  aedes.on('clientError', (client, err) => logger.debug({ clientId: client.id, err: err.message }, 'client error'));
  aedes.on('connectionError', (client, err) => logger.debug({ clientId: client?.id, err: err.message }, 'connection error'));

  try {
    await listen(server, port, host);
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

/**
 * MQTT 3.1.1 [MQTT-3.3.1-9]: RETAIN is 1 only on the retained messages sent because of a new
 * SUBSCRIBE, and 0 on everything sent for an established subscription. Aedes clears it on live
 * deliveries but keeps the publisher's flag on messages it queued for a persistent session: those
 * published while the client was away, and in-flight ones resent after a cut (both sent at
 * reconnect). A retained `/set` queued that way reached the gateway once as fresh and once more
 * with RETAIN, or only with RETAIN. Aedes marks its SUBSCRIBE-time replays with brokerId null
 * (so they are not deduplicated); everything else it forwards gets the flag cleared here.
 * Aedes calls this hook on every forward (live, queued, replay) and, for queued ones, sends the
 * packet it passed in: so the flag is cleared on that (per-delivery) copy.
 */
export function clearRetainUnlessReplay<P extends { retain: boolean; brokerId?: string | null }>(packet: P): P {
  if (packet.brokerId) packet.retain = false;
  return packet;
}

function sameSecret(expected: string, given: Buffer | undefined): boolean {
  const a = Buffer.from(expected);
  const b = given ?? Buffer.alloc(0);
  return a.length === b.length && timingSafeEqual(a, b);
}
