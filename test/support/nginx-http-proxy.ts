import { canConnect } from './can-connect.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTool } from './find-tool.ts';
import { freePort } from './free-port.ts';

/** Debian's nginx binary, or null when it is not installed. */
export function findNginx(): string | null {
  return findTool('nginx');
}

export interface NginxOptions {
  /** Where each daemon's page is served: location path (e.g. '/tether/') -> its port on 127.0.0.1. */
  locations: Array<{ path: string; upstreamPort: number }>;
  /** proxy_read_timeout: nginx closes a proxied response after this long without a byte from upstream. */
  readTimeoutSec: number;
  /** When given, the proxy asks for HTTP basic authentication (auth_basic) with this user. */
  user?: { name: string; password: string };
}

export interface RunningNginx {
  /** http://127.0.0.1:port (no trailing slash): add a location's path. */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** The access log so far: one line per request, with its status, bytes and request time. */
  accessLog(): string[];
  stop(): Promise<void>;
}

/**
 * The reverse proxy of the README, as a process of our own: its config, pid, logs and temp
 * paths in a temp folder, listening on loopback only.
 */
export function nginxConfig(dir: string, port: number, options: NginxOptions): string {
  const runAsRoot = process.getuid?.() === 0 ? 'user root root;\n' : '';
  const auth = options.user ? `      auth_basic "tether";\n      auth_basic_user_file ${join(dir, 'htpasswd')};\n` : '';
  return `${runAsRoot}worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} info;
events { worker_connections 64; }
http {
  log_format timed '$remote_addr "$request" $status $body_bytes_sent rt=$request_time';
  access_log ${join(dir, 'access.log')} timed;
  client_body_temp_path ${join(dir, 'tmp', 'body')};
  proxy_temp_path ${join(dir, 'tmp', 'proxy')};
  fastcgi_temp_path ${join(dir, 'tmp', 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'tmp', 'uwsgi')};
  scgi_temp_path ${join(dir, 'tmp', 'scgi')};
  server {
    listen 127.0.0.1:${port};
${options.locations
      .map(
        ({ path, upstreamPort }) => `    # As in the README: HTTP/1.1 to the daemon and no Connection: close, for the page's stream.
    location ${path} {
${auth}      proxy_pass http://127.0.0.1:${upstreamPort}/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout ${options.readTimeoutSec}s;
    }
`,
      )
      .join('')}  }
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
  const bin = findNginx();
  if (!bin) throw new Error('nginx is not installed: apt-get install nginx (scripts/test-all.sh installs it)');
  const dir = mkdtempSync(join(tmpdir(), 'tether-nginx-'));
  mkdirSync(join(dir, 'tmp'));
  const port = await freePort();
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port, options));
  if (options.user) writeFileSync(join(dir, 'htpasswd'), htpasswdLine(options.user.name, options.user.password));
  writeFileSync(join(dir, 'access.log'), '');
  const child: ChildProcess = spawn(bin, ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not start: ${stderr}${safeRead(join(dir, 'error.log'))}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    accessLog: () => safeRead(join(dir, 'access.log')).split('\n').filter(Boolean),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM'); // fast shutdown: open streams are cut (SIGQUIT would wait for them)
        const t = setTimeout(() => child.kill('SIGKILL'), 2000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

