import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onJsonLines } from './json-lines.ts';

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));

export interface EmulatorEvent {
  event: string;
  [key: string]: unknown;
}

/** `tether emulate --json` as a child process, the way a user runs it. */
export class EmulateProcess {
  readonly events: EmulatorEvent[] = [];
  private waiters: Array<{ match: (e: EmulatorEvent) => boolean; resolve: (e: EmulatorEvent) => void }> = [];
  private constructor(
    readonly child: ChildProcess,
    readonly ptyPath: string,
  ) {}

  /** On a pty (needs socat). */
  static async start(extraArgs: string[] = []): Promise<EmulateProcess> {
    const ptyPath = join(mkdtempSync(join(tmpdir(), 'tether-emulate-')), 'uno');
    return await EmulateProcess.launch(['--pty', ptyPath, ...extraArgs], ptyPath);
  }

  /** On a TCP port (`--tcp 0`: any free one; `tcpPort` says which). */
  static async startTcp(extraArgs: string[] = [], env?: NodeJS.ProcessEnv): Promise<EmulateProcess> {
    return await EmulateProcess.launch(['--tcp', '0', ...extraArgs], '', env);
  }

  /** The port `--tcp` serves on, from the ready event. */
  get tcpPort(): number {
    const ready = this.events.find((e) => e.event === 'ready');
    if (typeof ready?.port !== 'number') throw new Error('tether emulate is not serving on TCP');
    return ready.port;
  }

  private static async launch(args: string[], ptyPath: string, env?: NodeJS.ProcessEnv): Promise<EmulateProcess> {
    const child = spawn(process.execPath, [CLI, 'emulate', '--json', ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env,
    });
    const proc = new EmulateProcess(child, ptyPath);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    onJsonLines<EmulatorEvent>(child.stdout!, (event) => {
      proc.events.push(event);
      proc.waiters = proc.waiters.filter((w) => (w.match(event) ? (w.resolve(event), false) : true));
    });
    const ready = proc.waitFor((e) => e.event === 'ready', 15_000);
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`tether emulate exited early (${code}): ${stderr}`))),
    );
    await Promise.race([ready, exited]);
    exited.catch(() => {});
    return proc;
  }

  waitFor(match: (e: EmulatorEvent) => boolean, timeoutMs = 5000): Promise<EmulatorEvent> {
    const seen = this.events.find(match);
    if (seen) return Promise.resolve(seen);
    return this.nextEvent(match, timeoutMs);
  }

  /** The first matching event from now on. */
  nextEvent(match: (e: EmulatorEvent) => boolean, timeoutMs = 5000): Promise<EmulatorEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching emulator event within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        match,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }

  command(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    return await new Promise((resolve) => {
      this.child.once('exit', (code) => resolve(code));
      this.child.kill('SIGTERM');
    });
  }
}
