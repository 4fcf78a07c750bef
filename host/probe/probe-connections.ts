import { randomBytes } from 'node:crypto';
import net from 'node:net';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { encodeFrame, FrameSplitter } from '../../shared/protocol/index.ts';
import type { DeviceMessage } from '../../shared/protocol/messages.ts';
import type { ProbeConnection } from './idle-probe.ts';

export interface BrokerProbeOptions {
  username?: string;
  password?: string;
  /** PEM text of the CA (mqtts://, wss://). */
  ca?: string | Buffer;
  rejectUnauthorized?: boolean;
  connectTimeoutMs?: number;
  /** The MQTT version to speak; default: MQTT 5, and 3.1.1 if the broker refuses 5 (RabbitMQ 3.x, Aedes). */
  protocolVersion?: 5 | 4;
}

/**
 * An MQTT connection with keepalive 0 (so the broker itself never drops it for silence) and a
 * clean session under a random client id; ping() is PINGREQ -> PINGRESP.
 */
export async function openBrokerProbe(url: string, options: BrokerProbeOptions = {}): Promise<ProbeConnection & { serverKeepAliveSec?: number; protocolVersion: 5 | 4 }> {
  if (options.protocolVersion !== undefined) return { ...(await openWith(url, options, options.protocolVersion)), protocolVersion: options.protocolVersion };
  try {
    return { ...(await openWith(url, options, 5)), protocolVersion: 5 };
  } catch (err) {
    // Refused (CONNACK "unacceptable protocol version") or closed unanswered: try MQTT 3.1.1.
    if (!(err instanceof VersionRefused)) throw err;
    return { ...(await openWith(url, options, 4)), protocolVersion: 4 };
  }
}

class VersionRefused extends Error {}

async function openWith(url: string, options: BrokerProbeOptions, protocolVersion: 5 | 4): Promise<ProbeConnection & { serverKeepAliveSec?: number }> {
  const client: MqttClient = mqtt.connect(url, {
    clientId: `tether-probe-${randomBytes(4).toString('hex')}`,
    protocolVersion,
    clean: true,
    keepalive: 0,
    reconnectPeriod: 0,
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    username: options.username,
    password: options.password,
    ...(options.ca !== undefined ? { ca: options.ca } : {}),
    ...(options.rejectUnauthorized !== undefined ? { rejectUnauthorized: options.rejectUnauthorized } : {}),
  } satisfies IClientOptions);
  let closeReason = 'closed by the broker or the path';
  let errored = false;
  client.on('error', (err) => {
    errored = !/unacceptable protocol version/i.test(err.message);
    closeReason = err.message;
  });
  const closed = new Promise<string>((resolve) => client.once('close', () => resolve(closeReason)));
  const serverKeepAliveSec = await new Promise<number | undefined>((resolve, reject) => {
    client.once('connect', (connack) => resolve(connack.properties?.serverKeepAlive));
    void closed.then((why) => {
      const message = `cannot connect to ${url.replace(/\/\/[^@/]*@/, '//***@')} with MQTT ${protocolVersion === 5 ? '5' : '3.1.1'}: ${why}`;
      reject(protocolVersion === 5 && !errored ? new VersionRefused(message) : new Error(message));
    });
  });
  let waiter: (() => void) | null = null;
  client.on('packetreceive', (packet) => {
    if (packet.cmd === 'pingresp') waiter?.();
  });
  return {
    serverKeepAliveSec,
    closed,
    ping: (timeoutMs) =>
      new Promise<number>((resolve, reject) => {
        if (!client.connected) return reject(new Error('not connected'));
        const sent = Date.now();
        const timer = setTimeout(() => {
          waiter = null;
          reject(new Error(`no PINGRESP within ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = () => {
          clearTimeout(timer);
          waiter = null;
          resolve(Date.now() - sent);
        };
        client.sendPing();
      }),
    close: () => {
      client.end(true);
    },
  };
}

/**
 * A raw TCP connection to a serial-over-TCP bridge with a tether board behind it; ping() sends
 * a keepalive PING frame and waits for the board's PONG with the same sequence number.
 */
export async function openBridgeProbe(host: string, port: number, connectTimeoutMs = 5000): Promise<ProbeConnection> {
  const socket = net.connect({ host, port });
  socket.setNoDelay(true);
  let closeReason = 'closed by the bridge or the path';
  let text = '';
  const splitter = new FrameSplitter({ from: 'device' });
  let waiter: ((m: DeviceMessage) => void) | null = null;
  socket.on('error', (err) => (closeReason = err.message));
  socket.on('data', (chunk: Buffer) => {
    text = (text + chunk.toString('latin1')).slice(-200);
    if (/in use/i.test(text)) closeReason = `the bridge serves one client and is busy ("${text.trim()}"): stop the daemon using it first`;
    for (const event of splitter.push(chunk)) if (event.kind === 'message') waiter?.(event.message as DeviceMessage);
  });
  const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(closeReason)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no connection to ${host}:${port} within ${connectTimeoutMs} ms`));
    }, connectTimeoutMs);
    socket.once('connect', () => (clearTimeout(timer), resolve()));
    void closed.then((why) => (clearTimeout(timer), reject(new Error(`cannot connect to ${host}:${port}: ${why}`))));
  });
  let seq = 1;
  return {
    closed,
    ping: (timeoutMs) =>
      new Promise<number>((resolve, reject) => {
        if (socket.destroyed) return reject(new Error('closed'));
        const mine = seq;
        seq = (seq % 0x3fff) + 1;
        const sent = Date.now();
        const timer = setTimeout(() => {
          waiter = null;
          reject(new Error(`no PONG within ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = (m) => {
          if (m.type !== 'pong' || m.seq !== mine) return;
          clearTimeout(timer);
          waiter = null;
          resolve(Date.now() - sent);
        };
        socket.write(encodeFrame({ type: 'ping', seq: mine, leaseMs: 0 }));
      }),
    close: () => {
      socket.destroy();
    },
  };
}
