import { isIPv4, isIPv6 } from 'node:net';
import type { Logger } from '../log/logger.ts';
import type { Clock } from '../time/clock.ts';
import { SerialTransport } from './serial-transport.ts';
import type { TcpKeepaliveSettings } from './tcp-keepalive.ts';
import { TcpTransport } from './tcp-transport.ts';
import { TransportError, type Transport } from './transport.ts';

export type Target = { kind: 'tcp'; host: string; port: number } | { kind: 'serial'; path: string };

export interface CreateTransportOptions {
  /** Serial only. */
  baudRate?: number;
  /** Serial only: false keeps DTR up when the port closes (see SerialTransportOptions.hupcl). */
  hupcl?: boolean;
  /** TCP only. */
  connectTimeoutMs?: number;
  /** TCP only. */
  keepAliveInitialDelayMs?: number;
  /** TCP only: kernel keepalive and TCP_USER_TIMEOUT (see tcp-keepalive.ts). */
  keepalive?: TcpKeepaliveSettings;
  logger?: Logger;
  /** TCP only (connect timeout). */
  clock?: Clock;
}

const TCP_PREFIX = /^tcp:\/\//i;
/** Something that looks like a URL scheme ("udp://", "rfc2217://"): not a serial path, and not supported. */
const OTHER_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
const HOST_LABEL = /^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$/;

/**
 * What a target string names: `tcp://host:port` (host a name, an IPv4 address, or an IPv6
 * address in brackets) is a serial-over-TCP bridge; anything else is a serial device path
 * (/dev/ttyACM0, /dev/serial/by-id/..., COM3). Throws TransportError('invalid').
 */
export function parseTarget(target: string): Target {
  if (typeof target !== 'string' || target.trim() === '') {
    throw new TransportError('invalid', 'target is empty: expected a serial port path (/dev/ttyACM0) or tcp://host:port');
  }
  if (TCP_PREFIX.test(target)) return parseTcp(target);
  if (OTHER_SCHEME.test(target)) {
    const scheme = target.slice(0, target.indexOf(':'));
    throw new TransportError('invalid', `unsupported target "${target}": scheme "${scheme}" is not supported; use tcp://host:port or a serial port path`);
  }
  if (target !== target.trim()) {
    throw new TransportError('invalid', `serial port path "${target}" has leading or trailing spaces`);
  }
  return { kind: 'serial', path: target };
}

function parseTcp(target: string): Target {
  const invalid = (why: string) => new TransportError('invalid', `invalid target "${target}": ${why}; expected tcp://host:port`);
  const rest = target.replace(TCP_PREFIX, '');
  if (/[/?#@\s]/.test(rest)) throw invalid('only a host and a port are allowed (no path, user or spaces)');
  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const m = /^\[([^\]]*)\](?::(.*))?$/.exec(rest);
    if (!m) throw invalid('unclosed "[" in IPv6 address');
    host = m[1]!;
    if (!isIPv6(host)) throw invalid(`"${host}" is not an IPv6 address`);
    if (m[2] === undefined) throw invalid('port is missing');
    portText = m[2];
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon < 0) throw invalid('port is missing');
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (host.includes(':')) throw invalid('an IPv6 address needs brackets, like tcp://[::1]:2000');
    if (host === '') throw invalid('host is missing');
    if (/^[\d.]+$/.test(host)) {
      if (!isIPv4(host)) throw invalid(`"${host}" is not an IPv4 address`);
    } else {
      const name = host.endsWith('.') ? host.slice(0, -1) : host;
      if (name.length > 253 || !name.split('.').every((label) => HOST_LABEL.test(label))) {
        throw invalid(`"${host}" is not a valid host name`);
      }
    }
  }
  if (portText === '') throw invalid('port is missing');
  if (!/^\d{1,5}$/.test(portText)) throw invalid(`port "${portText}" is not a number from 1 to 65535`);
  const port = Number(portText);
  if (port < 1 || port > 65535) throw invalid(`port ${port} is out of range 1-65535`);
  return { kind: 'tcp', host, port };
}

/** A Transport for a target string (see parseTarget). Throws TransportError('invalid') for a bad target or option. */
export function createTransport(target: string, options: CreateTransportOptions = {}): Transport {
  const parsed = parseTarget(target);
  if (parsed.kind === 'tcp') {
    return new TcpTransport(parsed.host, parsed.port, {
      connectTimeoutMs: options.connectTimeoutMs,
      keepAliveInitialDelayMs: options.keepAliveInitialDelayMs,
      keepalive: options.keepalive,
      logger: options.logger,
      clock: options.clock,
    });
  }
  return new SerialTransport(parsed.path, { baudRate: options.baudRate, logger: options.logger, hupcl: options.hupcl });
}
