import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './free-port.ts';

export interface NginxWsProxyOptions {
  /** The WebSocket listener behind it (Mosquitto's `protocol websockets`). */
  upstreamPort: number;
  /** TLS on the front (wss://) with this certificate and key. */
  tls?: { cert: string; key: string };
  /** proxy_read_timeout: nginx closes a connection idle this long on the upstream side. */
  readTimeoutSec: number;
  /** The path it proxies (default /mqtt). */
  path?: string;
}

export interface RunningNginx {
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
}

export function nginxInstalled(): boolean {
  return spawnSync('nginx', ['-v'], { stdio: 'ignore' }).error === undefined;
}

/** Debian's nginx as a WebSocket reverse proxy, own process, everything in a temp folder. */
export async function startNginxWsProxy(options: NginxWsProxyOptions): Promise<RunningNginx> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-nginx-'));
  mkdirSync(path.join(dir, 'tmp'));
  const port = await freePort();
  const location = options.path ?? '/mqtt';
  const conf = `
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  server {
    listen 127.0.0.1:${port}${options.tls ? ' ssl' : ''};
    ${options.tls ? `ssl_certificate ${options.tls.cert}; ssl_certificate_key ${options.tls.key};` : ''}
    location ${location} {
      proxy_pass http://127.0.0.1:${options.upstreamPort};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout ${options.readTimeoutSec}s;
      proxy_send_timeout ${options.readTimeoutSec}s;
    }
  }
}
`;
  writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const child = spawn('nginx', ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited at start: ${stderr.trim()}`);
    const ss = spawnSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' });
    if (ss.stdout?.trim()) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not listen within 5 s: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    port,
    url: `${options.tls ? 'wss' : 'ws'}://127.0.0.1:${port}${location}`,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGQUIT');
        await exited;
      }
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
