import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { listen } from '../net/listen.ts';

/**
 * Starts `server` on host:port; a failure is one line saying what could not be served and why
 * (the port in use is the common case, and `inUseHint` tells the user which setting moves it).
 * Returns the port actually bound (0 asks for a free one) and the origin to print.
 */
export async function listenHttp(server: Server, port: number, host: string, what: string, inUseHint = 'the port is in use'): Promise<{ port: number; origin: string }> {
  try {
    await listen(server, port, host);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`cannot serve ${what} on ${host}:${port}: ${e.code === 'EADDRINUSE' ? inUseHint : e.message}`);
  }
  const bound = (server.address() as AddressInfo).port;
  return { port: bound, origin: `http://${host.includes(':') ? `[${host}]` : host}:${bound}` };
}
