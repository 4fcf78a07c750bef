import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './free-port.ts';

export interface Ser2netOptions {
  /** The serial device (a pty) ser2net opens for each client. */
  device: string;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  port?: number;
  /**
   * kickolduser: a new client replaces the previous one (default true). Without it ser2net
   * answers "Port already in use" as long as the old connection lingers, e.g. one a
   * middlebox forgot, which only ser2net's own TCP stack can find out.
   */
  kickOldUser?: boolean;
  /** Runs ser2net under this command prefix (e.g. ['ip', 'netns', 'exec', 'ns1']). */
  prefix?: string[];
}

export interface RunningSer2net {
  readonly host: string;
  readonly port: number;
  readonly target: string;
  stop(): Promise<void>;
}

export function ser2netInstalled(): boolean {
  return spawnSync('ser2net', ['-v'], { stdio: 'ignore' }).error === undefined;
}

/** Debian's ser2net 4 in the foreground with a YAML config in a temp folder, raw TCP to `device` at 57600 8N1. */
export async function startSer2net(options: Ser2netOptions): Promise<RunningSer2net> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-ser2net-'));
  const config = path.join(dir, 'ser2net.yaml');
  writeFileSync(
    config,
    [
      'connection: &bridge',
      `  accepter: tcp,${host},${port}`,
      `  connector: serialdev,${options.device},57600n81,local`,
      '  options:',
      `    kickolduser: ${options.kickOldUser ?? true}`,
      '',
    ].join('\n'),
  );
  const argv = [...(options.prefix ?? []), 'ser2net', '-d', '-u', '-c', config, '-P', path.join(dir, 'ser2net.pid')];
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-2000)));
  child.stderr!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-2000)));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  // Wait until it listens: a probe connection would open the pty, so only look at the socket table.
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`ser2net exited at start: ${output.trim()}`);
    if (listening(port, options.prefix)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`ser2net did not listen on ${host}:${port} within 5 s: ${output.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    host,
    port,
    target: `tcp://${net.isIPv6(host) ? `[${host}]` : host}:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Whether something listens on TCP `port` (in the namespace `prefix` runs in), from `ss`. */
function listening(port: number, prefix: string[] = []): boolean {
  const argv = [...prefix, 'ss', '-Hltn', `sport = :${port}`];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '';
}
