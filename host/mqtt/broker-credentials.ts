import { readFile } from 'node:fs/promises';
import type { BrokerSettings } from '../config/config-schema.ts';
import type { Logger } from '../log/logger.ts';
import { redactUrl } from '../log/redact.ts';

/** The environment variable a password may come from (systemd: an EnvironmentFile= or LoadCredential=). */
export const PASSWORD_ENV = 'TETHER_BROKER_PASSWORD';

export interface BrokerCredentials {
  username?: string;
  password?: string;
}

/**
 * The broker's username and password: `password`, else `passwordFile` (read now), else
 * $TETHER_BROKER_PASSWORD. Warns once when they would cross the network in clear text
 * (mqtt:// or ws:// to a host other than loopback) and when TLS verification is off.
 */
export async function resolveBrokerCredentials(broker: BrokerSettings, url: string, env: NodeJS.ProcessEnv, log: Logger): Promise<BrokerCredentials> {
  let password = broker.password;
  if (password === undefined && broker.passwordFile !== undefined) {
    try {
      password = (await readFile(broker.passwordFile, 'utf8')).trim();
    } catch (err) {
      throw new Error(`broker.passwordFile ${broker.passwordFile}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message}`);
    }
  }
  if (password === undefined && broker.username !== undefined && env[PASSWORD_ENV]) password = env[PASSWORD_ENV];
  const parsed = safeUrl(url);
  const inUrl = parsed !== null && (parsed.username !== '' || parsed.password !== '');
  if ((broker.username !== undefined || inUrl) && parsed && (parsed.protocol === 'mqtt:' || parsed.protocol === 'ws:') && !isLoopback(parsed.hostname)) {
    log.warn(
      { url: redactUrl(url) },
      `the broker credentials go over ${parsed.protocol.slice(0, -1)}:// in clear text to ${parsed.hostname}: use mqtts:// or wss:// (broker.tls) outside a trusted network`,
    );
  }
  if (broker.tls?.rejectUnauthorized === false) {
    log.warn({ url: redactUrl(url) }, "TLS certificate verification is off (broker.tls.rejectUnauthorized: false): anyone on the path can pose as the broker");
  }
  return { username: broker.username, password };
}

function safeUrl(url: string): URL | null {
  try {
    return new URL(url);
  } catch {
    return null;
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || host === '::1' || /^127\./.test(host);
}
