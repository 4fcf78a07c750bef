import { canConnect } from './can-connect.ts';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { requireTool } from './find-tool.ts';
import { freePort } from './free-port.ts';
import { waitFor } from './wait-for.ts';

export interface MosquittoOptions {
  /** Loopback port; a free one is picked when omitted. */
  port?: number;
  /** Directory for mosquitto.db; persistence is on (saved after every change) when given. */
  persistenceDir?: string;
  /** Users and passwords (a password_file made with mosquitto_passwd); anonymous clients are then refused. */
  users?: Record<string, string>;
  /** A second loopback listener speaking MQTT over WebSocket (`protocol websockets`) on this port. */
  websocketsPort?: number;
  /** More config lines, appended (e.g. a TLS or websockets listener). */
  extraConfig?: string[];
  /**
   * Never drop a QoS 1/2 message it acknowledged (benchmarks): mosquitto.conf(5) says that once a
   * client's queue holds `max_queued_messages` (default 1000) messages above those in flight,
   * further ones are "silently dropped", so a slow subscriber loses messages the publisher saw
   * acknowledged. 0 means no maximum for it and for `max_queued_bytes`. Off by default: tests keep
   * Mosquitto's own defaults.
   */
  keepAllQueued?: boolean;
}

export interface RunningMosquitto {
  readonly url: string;
  readonly port: number;
  /** Pid of the current process (changes on restart). */
  readonly pid: number;
  /** SIGKILL: no clean shutdown, no database save, sockets reset by the kernel. */
  kill9(): Promise<void>;
  /** Starts the broker again on the same port (after kill9 or stop). */
  restart(): Promise<void>;
  /** SIGTERM and wait for exit; removes the generated config. */
  stop(): Promise<void>;
}

function findMosquitto(): string {
  return requireTool('mosquitto', 'mosquitto', 'the MQTT integration tests need a real broker');
}



const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Spawns a real Mosquitto on a loopback port with a generated config and waits until it accepts TCP connections. */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<RunningMosquitto> {
  const binary = findMosquitto();
  const port = options.port ?? (await freePort());
  const confDir = mkdtempSync(path.join(os.tmpdir(), 'tether-mosquitto-'));
  const confPath = path.join(confDir, 'mosquitto.conf');
  const lines = [
    `listener ${port} 127.0.0.1`,
    ...passwordLines(confDir, options.users),
    ...(options.websocketsPort !== undefined ? [`listener ${options.websocketsPort} 127.0.0.1`, 'protocol websockets'] : []),
    // As root Mosquitto drops to user "mosquitto", which may not write the persistence dir.
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
  ];
  if (options.persistenceDir) {
    // Mosquitto does not create it: without it every save fails ("Error saving in-memory
    // database ... No such file or directory") and a restart comes back with nothing.
    mkdirSync(options.persistenceDir, { recursive: true });
    lines.push(
      'persistence true',
      `persistence_location ${options.persistenceDir.endsWith('/') ? options.persistenceDir : `${options.persistenceDir}/`}`,
      // Save after every change, so that even a SIGKILL keeps sessions and queued messages.
      'autosave_on_changes true',
      'autosave_interval 1',
    );
  }
  if (options.keepAllQueued) lines.push('max_queued_messages 0', 'max_queued_bytes 0');
  lines.push(...(options.extraConfig ?? []));
  writeFileSync(confPath, `${lines.join('\n')}\n`);

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let output = '';
  const killOnExit = () => child?.kill('SIGKILL');
  process.once('exit', killOnExit);

  async function spawnOnce(): Promise<void> {
    output = '';
    const proc = spawn(binary, ['-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let hasExited = false;
    exited = new Promise<void>((resolve) => {
      proc.once('close', () => {
        hasExited = true;
        resolve();
      });
      proc.once('error', (err) => {
        output += `\n${err.message}`;
        hasExited = true;
        resolve();
      });
    });
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000);
    };
    proc.stdout!.on('data', collect);
    proc.stderr!.on('data', collect);
    try {
      await waitFor(
        async () => {
          if (hasExited) throw new Error(`mosquitto exited at start (port ${port}): ${output.trim()}`);
          return await canConnect(port);
        },
        { timeoutMs: 5000, intervalMs: 25, what: `mosquitto to accept connections on port ${port}`, detail: () => output.trim() },
      );
    } catch (err) {
      if (!hasExited) {
        proc.kill('SIGKILL');
        await exited;
      }
      throw err;
    }
  }

  async function start(): Promise<void> {
    // After a kill the port may still be held for a moment: retry the bind for a while.
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await spawnOnce();
        return;
      } catch (err) {
        if (Date.now() > deadline || !/in use|exited at start/i.test(String(err))) throw err;
        await sleep(100);
      }
    }
  }

  async function signal(sig: NodeJS.Signals): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill(sig);
    await exited;
  }

  await start();
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    get pid() {
      return child?.pid ?? -1;
    },
    kill9: () => signal('SIGKILL'),
    restart: async () => {
      await signal('SIGKILL');
      await start();
    },
    stop: async () => {
      await signal('SIGTERM');
      process.off('exit', killOnExit);
      rmSync(confDir, { recursive: true, force: true });
    },
  };
}

function passwordLines(confDir: string, users: Record<string, string> | undefined): string[] {
  if (!users) return ['allow_anonymous true'];
  const file = path.join(confDir, 'passwords');
  for (const [i, [user, password]] of Object.entries(users).entries()) {
    execFileSync('mosquitto_passwd', [...(i === 0 ? ['-c'] : []), '-b', file, user, password], { stdio: 'ignore' });
  }
  return ['allow_anonymous false', `password_file ${file}`];
}
