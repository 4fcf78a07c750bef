import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, readlinkSync } from 'node:fs';

export class PtyBridgeError extends Error {
  constructor(
    message: string,
    /** 'socat-missing' when socat is not on PATH. */
    readonly code?: 'socat-missing',
  ) {
    super(message);
    this.name = 'PtyBridgeError';
  }
}

interface PtyBridgeEvents {
  /** Bytes a serial client wrote to the pty. */
  data: [Buffer];
  /** socat ended without close() being called. */
  exit: [code: number | null];
}

/**
 * Exposes a byte stream as a pseudo-terminal at a stable path (a symlink made by socat),
 * so any serial client (serialport, screen, avrdude) can open it like a USB serial port.
 * `close()` then `open()` again is an unplug and replug: the path disappears and returns.
 */
export class PtyBridge extends EventEmitter<PtyBridgeEvents> {
  private child: ChildProcess | null = null;
  private closing = false;
  /** Bytes dropped because no client drained the pty, as a USB serial chip drops them. */
  dropped = 0;

  constructor(readonly linkPath: string) {
    super();
  }

  /** Starts socat and resolves with the pty device path once the link exists. */
  async open(timeoutMs = 5000): Promise<string> {
    if (this.child) throw new PtyBridgeError(`pty bridge at ${this.linkPath} is already open`);
    this.closing = false;
    const child = spawn('socat', ['-d', '-d', 'STDIO', `pty,raw,echo=0,link=${this.linkPath}`], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    let stderr = '';
    const device = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => fail(new PtyBridgeError(`socat did not create ${this.linkPath} within ${timeoutMs} ms: ${stderr.trim()}`)), timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        this.child = null;
        child.kill('SIGKILL');
        reject(err);
      };
      child.once('error', (err: NodeJS.ErrnoException) =>
        fail(
          err.code === 'ENOENT'
            ? new PtyBridgeError('socat is not installed (Debian: apt-get install socat); it provides the emulated serial port', 'socat-missing')
            : err,
        ),
      );
      child.once('exit', (code) => fail(new PtyBridgeError(`socat exited with code ${code}: ${stderr.trim()}`)));
      child.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const m = /PTY is (\S+)/.exec(stderr);
        if (m && existsSync(this.linkPath)) {
          clearTimeout(timer);
          child.removeAllListeners('exit');
          child.removeAllListeners('error');
          resolve(m[1]!);
        }
      });
    });
    child.stderr!.removeAllListeners('data');
    child.stderr!.resume();
    child.stdout!.on('data', (chunk: Buffer) => this.emit('data', chunk));
    child.stdin!.on('error', () => {}); // EPIPE when socat dies first; 'exit' reports it
    child.once('exit', (code) => {
      this.child = null;
      if (!this.closing) this.emit('exit', code);
    });
    return device;
  }

  get isOpen(): boolean {
    return this.child !== null;
  }

  /** Sends bytes to the client. With nobody reading, the pty fills up; then bytes are dropped. */
  write(bytes: Uint8Array): void {
    const stdin = this.child?.stdin;
    if (!stdin || stdin.writableNeedDrain) {
      this.dropped += bytes.length;
      return;
    }
    stdin.write(bytes);
  }

  /** Stops socat; the link disappears, like a board unplugged. */
  async close(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.closing = true;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
    this.child = null;
  }

  /** The /dev/pts device behind the link, if it exists. */
  get devicePath(): string | null {
    try {
      return readlinkSync(this.linkPath);
    } catch {
      return null;
    }
  }
}
