import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canConnect } from './can-connect.ts';
import { findTool, requireTool } from './find-tool.ts';
import { freePort } from './free-port.ts';

// Debian's nginx as a process of our own (config, pid, logs and temp paths in a temp folder,
// listening on loopback only): the WebSocket reverse proxy in front of a broker, and the HTTP
// reverse proxy of the README in front of status pages.

/** Debian's nginx binary, or null when it is not installed. */
export function findNginx(): string | null {
  return findTool('nginx');
}

export interface NginxLocation {
  /** Location path, e.g. '/tether/' or '/mqtt'. */
  path: string;
  /** The HTTP or WebSocket listener behind it, on 127.0.0.1. */
  upstreamPort: number;
  /**
   * 'websocket': passes the Upgrade through with the request path as it is (Mosquitto's
   * `protocol websockets`); 'http': HTTP/1.1 to upstream with the location prefix stripped and no
   * `Connection: close`, as the README's status-page config does.
   */
  kind: 'websocket' | 'http';
}

export interface NginxOptions {
  locations: NginxLocation[];
  /** proxy_read_timeout (and proxy_send_timeout): nginx closes a proxied connection idle this long. */
  readTimeoutSec: number;
  /** TLS on the front with this certificate and key. */
  tls?: { cert: string; key: string };
  /** When given, the proxy asks for HTTP basic authentication (auth_basic) with this user. */
  user?: { name: string; password: string };
}

export interface RunningNginx {
  /** http(s)://127.0.0.1:port (no trailing slash): add a location's path. */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** The access log so far: one line per request, with its status, bytes and request time. */
  accessLog(): string[];
  stop(): Promise<void>;
}

export function nginxConfig(dir: string, port: number, options: NginxOptions): string {
  const runAsRoot = process.getuid?.() === 0 ? 'user root root;\n' : '';
  const auth = options.user ? `      auth_basic "tether";\n      auth_basic_user_file ${join(dir, 'htpasswd')};\n` : '';
  const timeouts = `      proxy_read_timeout ${options.readTimeoutSec}s;\n      proxy_send_timeout ${options.readTimeoutSec}s;\n`;
  const location = ({ path, upstreamPort, kind }: NginxLocation) =>
    kind === 'websocket'
      ? `    location ${path} {
${auth}      proxy_pass http://127.0.0.1:${upstreamPort};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
${timeouts}    }
`
      : `    # As in the README: HTTP/1.1 to the daemon and no Connection: close, for the page's stream.
    location ${path} {
${auth}      proxy_pass http://127.0.0.1:${upstreamPort}/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${timeouts}    }
`;
  return `${runAsRoot}worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} info;
events { worker_connections 256; }
http {
  log_format timed '$remote_addr "$request" $status $body_bytes_sent rt=$request_time';
  access_log ${join(dir, 'access.log')} timed;
  client_body_temp_path ${join(dir, 'tmp', 'body')};
  proxy_temp_path ${join(dir, 'tmp', 'proxy')};
  fastcgi_temp_path ${join(dir, 'tmp', 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'tmp', 'uwsgi')};
  scgi_temp_path ${join(dir, 'tmp', 'scgi')};
  server {
    listen 127.0.0.1:${port}${options.tls ? ' ssl' : ''};
${options.tls ? `    ssl_certificate ${options.tls.cert};\n    ssl_certificate_key ${options.tls.key};\n` : ''}${options.locations.map(location).join('')}  }
}
`;
}

/** An htpasswd line nginx reads: {SSHA} = base64(sha1(password + salt) + salt). */
export function htpasswdLine(name: string, password: string): string {
  const salt = randomBytes(8);
  const digest = createHash('sha1').update(password).update(salt).digest();
  return `${name}:{SSHA}${Buffer.concat([digest, salt]).toString('base64')}\n`;
}

export async function startNginx(options: NginxOptions): Promise<RunningNginx> {
  const bin = requireTool('nginx', 'nginx');
  const dir = mkdtempSync(join(tmpdir(), 'tether-nginx-'));
  mkdirSync(join(dir, 'tmp'));
  const port = await freePort();
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port, options));
  if (options.user) writeFileSync(join(dir, 'htpasswd'), htpasswdLine(options.user.name, options.user.password));
  writeFileSync(join(dir, 'access.log'), '');
  const child: ChildProcess = spawn(bin, ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      process.off('exit', killOnExit);
      throw new Error(`nginx did not start listening on 127.0.0.1:${port}: ${stderr}${safeRead(join(dir, 'error.log'))}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    dir,
    accessLog: () => safeRead(join(dir, 'access.log')).split('\n').filter(Boolean),
    async stop() {
      process.off('exit', killOnExit);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM'); // fast shutdown: open streams are cut (SIGQUIT would wait for them)
        const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** nginx as a WebSocket reverse proxy in front of a broker; `url` is the ws(s):// URL to give a client. */
export async function startNginxWsProxy(options: { upstreamPort: number; readTimeoutSec: number; tls?: { cert: string; key: string }; path?: string }): Promise<RunningNginx> {
  const path = options.path ?? '/mqtt';
  const nginx = await startNginx({ locations: [{ path, upstreamPort: options.upstreamPort, kind: 'websocket' }], readTimeoutSec: options.readTimeoutSec, tls: options.tls });
  return { ...nginx, url: `${nginx.url.replace(/^http/, 'ws')}${path}` };
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
