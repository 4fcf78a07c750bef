import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { onJsonLines } from './json-lines.ts';

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));

export interface LogLine {
  level: number;
  msg?: string;
  [key: string]: unknown;
}

/** `tether daemon` as a child process with a generated config, its JSON log parsed. */
export class DaemonProcess {
  readonly logs: LogLine[] = [];
  /** Everything the daemon printed, as printed. */
  stdout = '';
  stderr = '';
  private child: ChildProcess | null = null;
  private waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];

  constructor(
    readonly config: Record<string, unknown>,
    readonly dir = mkdtempSync(join(tmpdir(), 'tether-daemon-')),
  ) {}

  get configPath(): string {
    return join(this.dir, 'tether.yaml');
  }

  /** The daemon's pid (once started). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** `env` is added to this process's environment for the daemon; `wrapper` runs it (e.g. a sandbox that execs its arguments). */
  start(options: { env?: Record<string, string>; wrapper?: string[] } = {}): void {
    writeFileSync(this.configPath, stringify(this.config));
    const env = options.env ? { ...process.env, ...options.env } : undefined;
    const [file, ...args] = [...(options.wrapper ?? []), process.execPath, CLI, 'daemon', '--config', this.configPath];
    const child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: this.dir, env });
    this.child = child;
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    onJsonLines<LogLine>(child.stdout!, (entry) => {
      this.logs.push(entry);
      this.waiters = this.waiters.filter((w) => (w.match(entry) ? (w.resolve(entry), false) : true));
    });
  }

  waitForLog(match: (l: LogLine) => boolean, timeoutMs = 15_000): Promise<LogLine> {
    const seen = this.logs.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching daemon log line within ${timeoutMs} ms; stderr: ${this.stderr.slice(-500)}`)), timeoutMs);
      this.waiters.push({
        match,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  }

  /** SIGHUP: the daemon reads its TLS files again. */
  hup(): void {
    this.child?.kill('SIGHUP');
  }

  /** kill -9: no shutdown code runs. */
  async kill9(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** SIGTERM; resolves with the exit code. */
  async stop(): Promise<number | null> {
    return await this.signal('SIGTERM');
  }

  private async signal(signal: NodeJS.Signals): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    return await new Promise((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.kill(signal);
    });
  }
}
