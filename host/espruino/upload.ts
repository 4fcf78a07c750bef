/**
 * Uploads the keepalive module to an Espruino board over its REPL and save()s it:
 *
 * 1. connect: Ctrl-C (drop a half-typed line), then a sync line the board must echo back
 *    (`\x10print("tether:sync:N")`), tried a few times: a board in deep sleep loses the first
 *    bytes that wake it;
 * 2. prepare: stop a running module (its 'kill' handler also does this) and `reset()` the
 *    interpreter; the module's stop() hands a running watchdog back to automatic kicking, so
 *    the board is not reset half-way through the upload;
 * 3. send: the module, comments and indentation stripped, one no-echo line at a time
 *    (`\x10<line>\n`; the REPL collects a multi-line statement until its brackets close), in
 *    chunks, pausing on XOFF until XON (software flow control, as Espruino's UARTs do by
 *    default); any `Uncaught ...` the board prints fails the upload;
 * 4. save: `save()` stores the program in flash and runs E.on('init'): the module starts and
 *    says HELLO. Espruino runs save() only once all queued input has run, so a sync line sent
 *    after it comes back before the save even began: the end of the save is the module's boot
 *    HELLO (with a longer timeout: writing flash takes a while);
 * 5. verify: a HELLO_REQUEST frame (as `\x10tether.rx("...")`) must be answered by HELLO.
 *
 * `port` is a Transport already open on the board's console at the REPL's baud rate; it is
 * left open.
 */
import { encodeFrame, FrameSplitter } from '../../shared/protocol/index.ts';
import type { DeviceMessage, MessageOf } from '../../shared/protocol/messages.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import type { Transport } from '../transport/transport.ts';
import { EspruinoOutputSplitter, replLineForFrame } from './espruino-repl-transport.ts';

export type UploadPhase = 'connect' | 'prepare' | 'send' | 'save' | 'verify' | 'done';

export interface UploadProgress {
  phase: UploadPhase;
  /** Module bytes sent so far / in all (the module as sent: stripped, with line prefixes). */
  sentBytes: number;
  totalBytes: number;
}

export interface UploadOptions {
  clock?: Clock;
  /** Bytes per write (default 64). */
  chunkBytes?: number;
  /** Pause between writes (default 2 ms). */
  chunkDelayMs?: number;
  /** Longest wait for each answer from the board (default 5000 ms). */
  stepTimeoutMs?: number;
  /** Longest pause after XOFF before the upload fails (default 5000 ms). */
  xoffTimeoutMs?: number;
  /** Longest wait for save() to finish, i.e. for the module's boot HELLO (default 20000 ms). */
  saveTimeoutMs?: number;
  /** Strip comments and indentation (default true): Espruino keeps function source in RAM. */
  minify?: boolean;
  onProgress?: (progress: UploadProgress) => void;
}

export interface UploadResult {
  /** The module's answer to HELLO_REQUEST after save(). */
  hello: MessageOf<'hello'>;
  sentBytes: number;
  /** How often the board said XOFF. */
  xoffPauses: number;
  durationMs: number;
}

export type UploadErrorCode = 'no-repl' | 'timeout' | 'code-error' | 'no-hello' | 'closed';

export class UploadError extends Error {
  override readonly name = 'UploadError';
  constructor(
    readonly code: UploadErrorCode,
    message: string,
    /** What the board printed meanwhile (for a person to read). */
    readonly consoleText = '',
  ) {
    super(message);
  }
}

/**
 * Removes comments (keeping line breaks) from ES5 source, aware of string literals. Regular
 * expression literals are not recognised: the module has none (its unit test checks).
 */
export function stripComments(code: string): string {
  let out = '';
  let i = 0;
  while (i < code.length) {
    const c = code[i]!;
    const next = code[i + 1];
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < code.length && code[j] !== c && code[j] !== '\n') j += code[j] === '\\' ? 2 : 1;
      out += code.slice(i, j + 1);
      i = j + 1;
    } else if (c === '/' && next === '/') {
      while (i < code.length && code[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      const end = code.indexOf('*/', i + 2);
      const comment = code.slice(i, end < 0 ? code.length : end + 2);
      out += comment.includes('\n') ? '\n' : ' ';
      i = end < 0 ? code.length : end + 2;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** The REPL lines that carry `source`: stripped of comments, indentation and blank lines. */
export function moduleLines(source: string, minify = true): string[] {
  const text = minify ? stripComments(source) : source;
  return text
    .split(/\r?\n/)
    .map((line) => (minify ? line.trim() : line.replace(/\s+$/, '')))
    .filter((line) => line.length > 0);
}

export async function uploadToEspruino(port: Transport, source: string, options: UploadOptions = {}): Promise<UploadResult> {
  const upload = new Upload(port, options);
  try {
    return await upload.run(source);
  } finally {
    upload.dispose();
  }
}

class Upload {
  private readonly clock: Clock;
  private readonly chunkBytes: number;
  private readonly chunkDelayMs: number;
  private readonly stepTimeoutMs: number;
  private readonly xoffTimeoutMs: number;
  private readonly saveTimeoutMs: number;
  private readonly minify: boolean;
  private readonly output = new EspruinoOutputSplitter();
  private readonly frames = new FrameSplitter({ from: 'device' });
  private readonly messages: DeviceMessage[] = [];
  private text = '';
  private paused = false;
  private xoffPauses = 0;
  private sentBytes = 0;
  private totalBytes = 0;
  private phase: UploadPhase = 'connect';
  private syncCount = 0;
  private closed = false;
  private readonly waiters = new Set<() => void>();
  private readonly timers = new Set<TimerHandle>();
  private readonly onData = (bytes: Buffer) => this.receive(bytes);
  private readonly onClose = () => {
    this.closed = true;
    this.notify();
  };

  constructor(
    private readonly port: Transport,
    private readonly options: UploadOptions,
  ) {
    this.clock = options.clock ?? systemClock;
    this.chunkBytes = Math.max(1, options.chunkBytes ?? 64);
    this.chunkDelayMs = options.chunkDelayMs ?? 2;
    this.stepTimeoutMs = options.stepTimeoutMs ?? 5000;
    this.xoffTimeoutMs = options.xoffTimeoutMs ?? 5000;
    this.saveTimeoutMs = options.saveTimeoutMs ?? 20_000;
    this.minify = options.minify ?? true;
    port.on('data', this.onData);
    port.on('close', this.onClose);
  }

  async run(source: string): Promise<UploadResult> {
    const started = this.clock.now();
    if (!this.port.isOpen) throw new UploadError('closed', 'the port is not open');
    const lines = moduleLines(source, this.minify).map((line) => `\x10${line}\n`);
    this.totalBytes = lines.reduce((n, line) => n + line.length, 0);

    this.progress('connect');
    await this.connect();

    this.progress('prepare');
    await this.send('\x10if (typeof tether !== "undefined" && tether.stop) tether.stop();\n');
    await this.send('\x10reset();\n');
    await this.sync();

    this.progress('send');
    const mark = this.text.length;
    await this.send(lines.join(''), (n) => {
      this.sentBytes += n;
      this.progress('send');
    });
    await this.sync();
    const printed = this.text.slice(mark);
    if (/Uncaught|SyntaxError/.test(printed)) throw new UploadError('code-error', 'the board rejected the module', printed);

    this.progress('save');
    const beforeSave = this.messages.length;
    await this.send('\x10save();\n');
    try {
      await this.waitFor(
        () => this.messages.slice(beforeSave).some((m) => m.type === 'hello' && !m.reply),
        this.saveTimeoutMs,
        'timeout',
        "the end of save() (the module's boot HELLO)",
      );
    } catch (err) {
      if (err instanceof UploadError && err.code === 'closed') throw err;
      // No boot HELLO (e.g. a module built to talk on another UART): verify will tell.
    }
    await this.sync();

    this.progress('verify');
    const hello = await this.verify();
    this.progress('done');
    return { hello, sentBytes: this.sentBytes, xoffPauses: this.xoffPauses, durationMs: this.clock.now() - started };
  }

  dispose(): void {
    this.port.off('data', this.onData);
    this.port.off('close', this.onClose);
    for (const timer of this.timers) this.clock.clearTimeout(timer);
    this.timers.clear();
    this.waiters.clear();
  }

  // ---- steps ----------------------------------------------------------------------------

  private async connect(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await this.send('\x03');
      await this.delay(50);
      try {
        await this.sync(Math.min(this.stepTimeoutMs, 1000));
        return;
      } catch (err) {
        if (attempt >= 3) throw new UploadError('no-repl', `no Espruino REPL answered on ${this.port.description}`, this.text);
        if (err instanceof UploadError && err.code === 'closed') throw err;
      }
    }
  }

  private async verify(): Promise<MessageOf<'hello'>> {
    const request = replLineForFrame(encodeFrame({ type: 'hello-request' }));
    for (let attempt = 1; attempt <= 3; attempt++) {
      const from = this.messages.length;
      // An empty no-echo line first: wakes a module that went to sleep (policy sleep) already.
      await this.send('\x10\n');
      await this.delay(50);
      await this.send(request);
      try {
        await this.waitFor(() => this.messages.slice(from).some((m) => m.type === 'hello' && m.reply), this.stepTimeoutMs, 'timeout', 'HELLO');
        return this.messages.slice(from).find((m): m is MessageOf<'hello'> => m.type === 'hello' && m.reply)!;
      } catch (err) {
        if (err instanceof UploadError && err.code === 'closed') throw err;
      }
    }
    throw new UploadError('no-hello', 'the module did not answer HELLO_REQUEST after save()', this.text);
  }

  /** Has the board print a fresh marker and waits for it: everything sent before has run. */
  private async sync(timeoutMs = this.stepTimeoutMs): Promise<void> {
    const marker = `tether:sync:${++this.syncCount}`;
    await this.send(`\x10print("${marker}")\n`);
    await this.waitFor(() => this.text.includes(marker), timeoutMs, 'timeout', `the board's answer to ${this.phase}`);
  }

  /** Writes in chunks, honouring XOFF. */
  private async send(text: string, onChunk?: (bytes: number) => void): Promise<void> {
    const bytes = Buffer.from(text, 'latin1');
    for (let at = 0; at < bytes.length; at += this.chunkBytes) {
      if (this.paused) await this.waitFor(() => !this.paused, this.xoffTimeoutMs, 'timeout', 'XON after XOFF');
      const chunk = bytes.subarray(at, at + this.chunkBytes);
      if (this.closed || !this.port.write(chunk)) {
        throw new UploadError('closed', `${this.port.description} closed during the upload`, this.text);
      }
      onChunk?.(chunk.length);
      if (this.chunkDelayMs > 0) await this.delay(this.chunkDelayMs);
    }
  }

  // ---- plumbing -------------------------------------------------------------------------

  private receive(bytes: Buffer): void {
    const { frames, text, flow } = this.output.push(bytes);
    for (const f of flow) {
      if (f === 'xoff' && !this.paused) this.xoffPauses++;
      this.paused = f === 'xoff';
    }
    if (text.length > 0) this.text += Buffer.from(text).toString('latin1');
    for (const event of this.frames.push(Uint8Array.from(frames))) {
      if (event.kind === 'message') this.messages.push(event.message as DeviceMessage);
    }
    this.notify();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  private progress(phase: UploadPhase): void {
    this.phase = phase;
    this.options.onProgress?.({ phase, sentBytes: this.sentBytes, totalBytes: this.totalBytes });
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.add(timer);
    });
  }

  private waitFor(check: () => boolean, timeoutMs: number, code: UploadErrorCode, what: string): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = () => {
        if (this.closed) {
          finish();
          reject(new UploadError('closed', `${this.port.description} closed while waiting for ${what}`, this.text));
        } else if (check()) {
          finish();
          resolve();
        }
      };
      const timer = this.clock.setTimeout(() => {
        finish();
        reject(new UploadError(code, `no ${what} within ${timeoutMs} ms`, this.text));
      }, timeoutMs);
      const finish = () => {
        this.clock.clearTimeout(timer);
        this.timers.delete(timer);
        this.waiters.delete(waiter);
      };
      this.timers.add(timer);
      this.waiters.add(waiter);
    });
  }
}
