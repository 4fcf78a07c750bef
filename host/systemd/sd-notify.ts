import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { delimiter, join } from 'node:path';
import { silentLogger, type Logger } from '../log/logger.ts';
import { systemClock, type Clock } from '../time/clock.ts';

/**
 * sd_notify(3) for Node.
 *
 * systemd hands a Type=notify service a unix DATAGRAM socket in `$NOTIFY_SOCKET` (a path, or
 * an abstract name starting with '@'). Node's `dgram` has no unix datagram sockets, so:
 *
 * - `unix-dgram` (an optional dependency, a small native addon built by node-gyp at install):
 *   the daemon sends each datagram itself, from its own pid, with no child process. systemd
 *   then accepts it with `NotifyAccess=main` (the kernel gives the manager our credentials:
 *   it sets SO_PASSCRED on the notify socket). This is the way used whenever the addon loads
 *   and the socket is a path (systemd's own `/run/systemd/notify` is one). One socket is made
 *   per message and closed at once, so nothing stays open between messages.
 * - Fallbacks, with a warning that the unit then needs `NotifyAccess=all` (the sender is not
 *   the main process): the addon did not build, or the socket is abstract ('@name':
 *   unix-dgram copies the path with strncpy and cannot address one). A helper process per
 *   message:
 *   - `systemd-notify --pid=<our pid> VAR=VALUE...` when it is on PATH (it ships with systemd).
 *     It sends with SCM_CREDENTIALS naming our pid when it may (root), else its own, and then
 *     waits for the manager to have processed the message (sd_notify_barrier, up to 5 s).
 *     `--pid` also sends MAINPID=<our pid>, which is right when node is what ExecStart runs.
 *   - else `socat -u - UNIX-SENDTO:<path>` (ABSTRACT-SENDTO for '@' names) with the message on
 *     stdin. socat has no barrier: with a non-root User= the manager may find the sender gone.
 *
 * Nothing here blocks the event loop: one send at a time, and requests made while one is in
 * flight are coalesced into the next message (READY and STOPPING are kept, the newest STATUS
 * wins, any number of WATCHDOG requests become one). Failures are logged once (then at debug
 * until a send works again) and never thrown. Without NOTIFY_SOCKET everything is a no-op.
 */

/** Sends one datagram (the `\n`-separated assignments); rejects when it could not. */
export type NotifySend = (message: string) => Promise<void>;

export interface SdNotifyOptions {
  /** Default: `env.NOTIFY_SOCKET`. Empty or unset: every call is a no-op. */
  socketPath?: string;
  env?: NodeJS.ProcessEnv;
  /** How a message is sent (default: defaultSender()). For tests. */
  send?: NotifySend;
  /** For tests: how the unix-dgram addon is loaded (default: require('unix-dgram')). */
  loadUnixDgram?: () => UnixDgramModule;
  /** Our pid, for systemd-notify --pid (default process.pid). */
  pid?: number;
  logger?: Logger;
}

export interface NotifyFields {
  ready: boolean;
  stopping: boolean;
  watchdog: boolean;
  status: string | null;
}

const empty = (): NotifyFields => ({ ready: false, stopping: false, watchdog: false, status: null });

export class SdNotify {
  /** NOTIFY_SOCKET, or null when not under systemd (then nothing is ever sent). */
  readonly socketPath: string | null;
  /** What sends: 'unix-dgram' (the daemon itself), 'systemd-notify', 'socat', 'custom', or null (disabled or nothing found). */
  readonly via: string | null;
  private readonly sendFn: NotifySend | null;
  private readonly log: Logger;
  private pending = empty();
  private inFlight: Promise<void> | null = null;
  private failing = false;
  private sent = 0;

  constructor(options: SdNotifyOptions = {}) {
    const env = options.env ?? process.env;
    const socketPath = options.socketPath ?? env.NOTIFY_SOCKET ?? '';
    this.socketPath = socketPath === '' ? null : socketPath;
    this.log = (options.logger ?? silentLogger).child({ component: 'sd-notify' });
    if (this.socketPath === null) {
      this.sendFn = null;
      this.via = null;
    } else if (options.send) {
      this.sendFn = options.send;
      this.via = 'custom';
    } else {
      const direct = datagramSender(this.socketPath, options.loadUnixDgram);
      if ('send' in direct) {
        this.sendFn = direct.send;
        this.via = direct.via;
        return;
      }
      const helper = helperSender(this.socketPath, { pid: options.pid ?? process.pid, env });
      this.sendFn = helper?.send ?? null;
      this.via = helper?.via ?? null;
      if (helper) {
        this.log.warn(
          { socket: this.socketPath, via: helper.via, why: direct.unavailable },
          `sd_notify through ${helper.via}, a process per message (${direct.unavailable}): the unit needs NotifyAccess=all instead of main`,
        );
      } else {
        this.log.error(
          { socket: this.socketPath, why: direct.unavailable },
          `NOTIFY_SOCKET is set but ${direct.unavailable}, and neither systemd-notify nor socat is on PATH: cannot notify systemd`,
        );
      }
    }
  }

  /** True when messages are actually sent (under systemd, with a helper). */
  get enabled(): boolean {
    return this.sendFn !== null;
  }

  /** Datagrams sent successfully so far. */
  get sentCount(): number {
    return this.sent;
  }

  ready(): void {
    this.request((p) => (p.ready = true));
  }

  stopping(): void {
    this.request((p) => (p.stopping = true));
  }

  watchdog(): void {
    this.request((p) => (p.watchdog = true));
  }

  /** One line for `systemctl status` (newlines become spaces). */
  status(text: string): void {
    const line = text.replace(/[\r\n]+/g, ' ').trim();
    this.request((p) => (p.status = line));
  }

  /** Resolves once nothing is in flight or pending (never rejects). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  private request(change: (p: NotifyFields) => void): void {
    if (!this.sendFn) return;
    change(this.pending);
    if (!this.inFlight) this.inFlight = this.drain();
  }

  private async drain(): Promise<void> {
    const send = this.sendFn!;
    try {
      for (;;) {
        const message = format(this.pending);
        this.pending = empty();
        if (message === '') return;
        try {
          await send(message);
          this.sent++;
          if (this.failing) this.log.info({ via: this.via }, 'sd_notify works again');
          this.failing = false;
        } catch (err) {
          const text = err instanceof Error ? err.message : String(err);
          if (!this.failing) {
            this.log.warn(
              { via: this.via, socket: this.socketPath, err: text, message },
              'sd_notify failed (further failures are logged at debug until a message goes through)',
            );
          } else {
            this.log.debug({ via: this.via, err: text, message }, 'sd_notify failed');
          }
          this.failing = true;
        }
      }
    } finally {
      this.inFlight = null;
    }
  }
}

/** The datagram for what is pending: `READY=1\nSTATUS=...\nWATCHDOG=1`, or '' for nothing. */
export function format(p: NotifyFields): string {
  const lines: string[] = [];
  if (p.ready) lines.push('READY=1');
  if (p.stopping) lines.push('STOPPING=1');
  if (p.status !== null) lines.push(`STATUS=${p.status}`);
  if (p.watchdog) lines.push('WATCHDOG=1');
  return lines.join('\n');
}

/** What tether uses of the `unix-dgram` package (it has no type definitions of its own). */
export interface UnixDgramModule {
  createSocket(type: 'unix_dgram'): UnixDgramSocket;
}

interface UnixDgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, callback: (err?: Error) => void): void;
  close(): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
}

const requireHere = createRequire(import.meta.url);

function requireUnixDgram(): UnixDgramModule {
  return requireHere('unix-dgram') as UnixDgramModule;
}

/**
 * A sender that writes the datagram from this process (unix-dgram), or why it cannot: the
 * addon is not installed or did not build, or the socket is abstract.
 */
export function datagramSender(
  socketPath: string,
  load: () => UnixDgramModule = requireUnixDgram,
): { send: NotifySend; via: 'unix-dgram' } | { unavailable: string } {
  if (socketPath.startsWith('@')) return { unavailable: `NOTIFY_SOCKET ${socketPath} is abstract, which unix-dgram cannot address` };
  let dgram: UnixDgramModule;
  try {
    dgram = load();
  } catch (err) {
    const text = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    return { unavailable: `the optional package unix-dgram is not available (${text})` };
  }
  return {
    via: 'unix-dgram',
    send: (message) =>
      new Promise<void>((resolve, reject) => {
        let socket: UnixDgramSocket;
        try {
          socket = dgram.createSocket('unix_dgram');
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        socket.on('error', () => {}); // errors come through the callback
        const buf = Buffer.from(message, 'utf8');
        // The datagram is queued in the kernel when send() returns (the callback runs inside it):
        // closing right after loses nothing.
        let result: Error | undefined;
        try {
          socket.send(buf, 0, buf.length, socketPath, (err) => (result = err));
        } catch (err) {
          result = err instanceof Error ? err : new Error(String(err));
        }
        try {
          socket.close();
        } catch {
          // already closed
        }
        if (result) reject(new Error(`sendto ${socketPath} failed: ${errnoName(result)}`));
        else resolve();
      }),
  };
}

/** unix-dgram's errors carry a negative errno ("send -111"): name it (ECONNREFUSED). */
function errnoName(err: Error): string {
  const code = Number((err as { code?: unknown }).code);
  if (!Number.isInteger(code)) return err.message;
  const name = Object.entries(osConstants.errno).find(([, v]) => v === -code)?.[0];
  return name ? `${name} (${err.message})` : err.message;
}

/** First executable `name` on `PATH`, or null. */
export function findExecutable(name: string, path = process.env.PATH ?? ''): string | null {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return null;
}

export interface HelperOptions {
  pid: number;
  env: NodeJS.ProcessEnv;
  /** Kills a helper still running after this long (default 10 s; systemd-notify's barrier waits up to 5 s). */
  timeoutMs?: number;
  clock?: Clock;
  /** Force one helper (default: systemd-notify if on PATH, else socat). */
  prefer?: 'systemd-notify' | 'socat';
}

/** A sender that runs systemd-notify or socat per message; null when neither is on PATH. */
export function helperSender(socketPath: string, options: HelperOptions): { send: NotifySend; via: 'systemd-notify' | 'socat' } | null {
  const path = options.env.PATH ?? '';
  const systemdNotify = options.prefer === 'socat' ? null : findExecutable('systemd-notify', path);
  if (systemdNotify) {
    return {
      via: 'systemd-notify',
      send: (message) =>
        runHelper(systemdNotify, [`--pid=${options.pid}`, ...message.split('\n')], null, {
          ...options,
          env: { ...options.env, NOTIFY_SOCKET: socketPath },
        }),
    };
  }
  const socat = options.prefer === 'systemd-notify' ? null : findExecutable('socat', path);
  if (socat) {
    return { via: 'socat', send: (message) => runHelper(socat, ['-u', '-', socatAddress(socketPath)], message, options) };
  }
  return null;
}

/** socat's address for a NOTIFY_SOCKET value: '@name' is an abstract socket. */
export function socatAddress(socketPath: string): string {
  const escape = (s: string) => s.replace(/[\\:,!"'()[\]{}]/g, (c) => `\\${c}`);
  return socketPath.startsWith('@') ? `ABSTRACT-SENDTO:${escape(socketPath.slice(1))}` : `UNIX-SENDTO:${escape(socketPath)}`;
}

function runHelper(file: string, args: string[], stdin: string | null, options: HelperOptions): Promise<void> {
  const clock = options.clock ?? systemClock;
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise<void>((resolve, reject) => {
    // No shell: the message is an argument or stdin, never parsed by anything.
    const child = spawn(file, args, { stdio: [stdin === null ? 'ignore' : 'pipe', 'ignore', 'pipe'], env: options.env });
    let stderr = '';
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const timer = clock.setTimeout(() => {
      child.kill('SIGKILL');
      finish(new Error(`${file} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 2000) stderr += d.toString();
    });
    child.on('error', (err) => finish(new Error(`cannot run ${file}: ${err.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) finish();
      else finish(new Error(`${file} ${signal ? `killed by ${signal}` : `exited with ${code}`}${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
    });
    if (stdin !== null) {
      child.stdin!.on('error', () => {}); // EPIPE if it died first: 'close' reports it
      child.stdin!.end(stdin);
    }
  });
}
