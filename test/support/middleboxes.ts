import { canConnect } from './can-connect.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { findTool, requireTool, toolAvailable } from './find-tool.ts';
import { freePort } from './free-port.ts';
import { startNginx } from './nginx.ts';

export { findTool, toolAvailable };

// Real middleboxes in front of a broker, started by the tests: nginx (WebSocket reverse proxy),
// HAProxy (mode tcp) and a user-space relay that silently forgets idle connections. Each is
// its own process (or server) with a config in a temp folder, on loopback only.

export interface Middlebox {
  /** Loopback port clients connect to. */
  readonly port: number;
  /** Bytes that went through, both directions (TCP payload: MQTT and WebSocket framing). */
  readonly bytes?: () => number;
  stop(): Promise<void>;
}



async function spawnUntilListening(binary: string, args: string[], port: number, what: string, dir: string): Promise<Middlebox> {
  let output = '';
  const child: ChildProcess = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = (d: Buffer) => (output = (output + d.toString()).slice(-4000));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  let exited = false;
  const closed = new Promise<void>((resolve) => child.once('close', () => ((exited = true), resolve())));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const deadline = Date.now() + 5000;
  while (!(await canConnect(port))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${what} did not start listening on 127.0.0.1:${port}: ${output.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    port,
    async stop() {
      process.off('exit', killOnExit);
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await closed;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * nginx as a WebSocket reverse proxy to 127.0.0.1:upstreamPort (the broker's websockets
 * listener), closing connections idle for `idleTimeoutSec` (proxy_read_timeout / proxy_send_timeout).
 */
export async function startNginxWebSocketProxy(options: { upstreamPort: number; idleTimeoutSec: number }): Promise<Middlebox> {
  const nginx = await startNginx({ locations: [{ path: '/', upstreamPort: options.upstreamPort, kind: 'websocket' }], readTimeoutSec: options.idleTimeoutSec });
  return { port: nginx.port, stop: () => nginx.stop() };
}

/** HAProxy in `mode tcp` to 127.0.0.1:upstreamPort, closing connections idle for `idleTimeoutSec` (timeout client/server). */
export async function startHaproxyTcp(options: { upstreamPort: number; idleTimeoutSec: number }): Promise<Middlebox> {
  const haproxy = requireTool('haproxy', 'haproxy');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-haproxy-'));
  const port = await freePort();
  const conf = `
global
  maxconn 256
defaults
  mode tcp
  timeout connect 2s
  timeout client ${options.idleTimeoutSec}s
  timeout server ${options.idleTimeoutSec}s
frontend mqtt
  bind 127.0.0.1:${port}
  default_backend broker
backend broker
  server mosquitto 127.0.0.1:${options.upstreamPort}
`;
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, conf);
  return spawnUntilListening(haproxy, ['-db', '-f', file], port, 'haproxy', dir);
}

/**
 * A relay that silently forgets a connection idle (no byte either way) for `forgetAfterMs`,
 * as a NAT or a cloud load balancer does: from then on it reads and drops everything both
 * ways and closes nothing, so its kernel still ACKs and neither end learns anything from TCP.
 * `bytes()` counts what it forwarded.
 */
export async function startForgettingRelay(options: { upstreamPort: number; forgetAfterMs: number }): Promise<Middlebox & { bytes: () => number; forgotten(): number }> {
  let bytes = 0;
  let forgotten = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ port: options.upstreamPort, host: '127.0.0.1' });
    sockets.add(client).add(upstream);
    let last = performance.now();
    let lost = false;
    const forward = (to: net.Socket) => (chunk: Buffer) => {
      const now = performance.now();
      if (!lost && now - last >= options.forgetAfterMs) {
        lost = true;
        forgotten++;
      }
      if (lost) return; // forgotten: dropped, nothing closed
      last = now;
      bytes += chunk.length;
      if (!to.destroyed) to.write(chunk);
    };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    const close = (other: net.Socket) => () => {
      if (!lost) other.destroy();
    };
    client.on('close', close(upstream));
    upstream.on('close', close(client));
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    bytes: () => bytes,
    forgotten: () => forgotten,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A transparent relay that counts the bytes through it (put in front of another middlebox to measure). */
export async function startCountingRelay(upstreamPort: number): Promise<Middlebox & { bytes: () => number }> {
  return startForgettingRelay({ upstreamPort, forgetAfterMs: Number.POSITIVE_INFINITY });
}
