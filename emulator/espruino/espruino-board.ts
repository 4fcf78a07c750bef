/**
 * An Espruino board (Pico-like, STM32F4) for tests and demos: the real keepalive module
 * (firmware/espruino/tether-keepalive.js) runs in a `node:vm` context with the stand-in
 * globals of espruino-globals.ts, behind a serial line with the Espruino REPL on it.
 *
 * What it models, and how:
 * - The console UART (Serial1 by default): bytes from the host go into a bounded RX buffer;
 *   the REPL takes them out at a limited rate, edits lines (Ctrl-C, backspace, `\x10` = no
 *   echo for this line), collects multi-line statements until they parse, and executes them
 *   (taking time in proportion to their length). Flow control as Espruino's: XOFF (0x13) when
 *   the buffer is 3/4 full, XON (0x11) once it drained to 1/4; bytes beyond a full buffer are
 *   lost (E.getErrorFlags() 'FIFO_FULL').
 * - Flash (Storage files, the saved program `.varimg`, `.bootcde`) survives every reset.
 *   save() keeps the source of the statements run since the last reset() and boot re-runs it:
 *   Espruino saves the RAM image instead, which for a module that only defines things and
 *   registers E.on('init') is the same state.
 * - Resets: the reset button (`reset()`), a power cycle (`powerCycle()`: the RTC restarts), the
 *   watchdog, E.reboot(). Each sets the STM32 RCC_CSR reset flags the module reads with peek32,
 *   clears the interpreter and boots: banner, saved program, `.bootcde`, E.on('init').
 * - The watchdog: armed by E.enableWatchdog; not kicked in time (manual mode), or the
 *   interpreter hung (either mode), it resets the board. It keeps counting in deep sleep.
 * - Deep sleep: while setDeepSleep(1) is in force the UART is off: a received byte is lost and
 *   its start bit is a falling edge on the RX pin (which a setWatch can catch to wake up).
 *   Timers keep running (the RTC wakes the chip for them). Time with deep sleep on is counted.
 * - freeze(): the interpreter hangs (a JS busy loop): no timers, no REPL; the RX buffer still
 *   fills (interrupt-driven) and the watchdog still counts. thaw() ends it.
 */
import { EventEmitter } from 'node:events';
import vm from 'node:vm';
import { systemClock, type Clock, type TimerHandle } from '../../host/time/clock.ts';
import { TransportError, type Transport, type TransportEvents } from '../../host/transport/transport.ts';
import { EspruinoRuntime, espruinoBytes, type EspruinoHardware, type SerialName, type Todo } from './espruino-globals.ts';

export type EspruinoResetCause = 'power-on' | 'external' | 'watchdog' | 'software' | 'brown-out';
export type EspruinoRunMode = 'running' | 'sleeping' | 'frozen' | 'off';

export interface EspruinoBoardOptions {
  clock?: Clock;
  /** The program in flash, as save() would have stored it (e.g. the module's source). */
  program?: string;
  /** process.env.BOARD (default 'PICO_R1_3': STM32F401, RCC_CSR at 0x40023874). */
  boardName?: string;
  /** Flash to start from; shared between boards to model moving a chip. */
  storage?: Map<string, Buffer>;
  /** The serial line the host is on: the console (Serial1, default) or another UART. */
  line?: 'Serial1' | 'Serial2';
  /** RX buffer size in bytes (default 512). */
  rxBufferBytes?: number;
  /** Bytes the REPL takes from the RX buffer per millisecond (default 64). */
  replBytesPerMs?: number;
  /** Characters of a statement the interpreter parses and runs per millisecond (default 256). */
  executeCharsPerMs?: number;
  /**
   * Which optional APIs the build has (default: both, as on the STM32 boards). `deepSleep:
   * false` models the Linux, nRF52, ESP32, ESP8266 and RP2040 builds: no `setDeepSleep`.
   */
  apis?: { deepSleep?: boolean; watchdog?: boolean };
  /** How long save() takes to write flash (default 400 ms); the REPL runs nothing meanwhile. */
  saveMs?: number;
}

export interface EspruinoBoardStats {
  /** Milliseconds since the last power-on. */
  uptimeMs: number;
  /** Total milliseconds with deep sleep in force. */
  asleepMs: number;
  sleeps: number;
  resets: Record<EspruinoResetCause, number>;
  /** Bytes lost to a full RX buffer. */
  rxDropped: number;
  /** Bytes lost because the UART was off (deep sleep). */
  rxLostAsleep: number;
  xoffSent: number;
  boots: number;
  watchdog: { enabled: boolean; auto: boolean; timeoutMs: number };
  /** Storage writes (write/writeJSON) by file name since the board was made. */
  storageWrites: Record<string, number>;
}

interface EspruinoBoardEvents {
  /** Bytes out of the board on the host's line. */
  data: [Buffer];
  /** Console text when the host's line is not the console. */
  console: [string];
  reset: [EspruinoResetCause];
  sleep: [];
  wake: [];
  /** save() finished writing flash (E.on('init') has run). */
  saved: [];
}

const XON = 0x11;
const XOFF = 0x13;

/** RCC_CSR of the STM32 boards, and its bits. */
const RCC_CSR_BY_BOARD: Record<string, number> = { PICO_R1_3: 0x40023874, ESPRUINOWIFI: 0x40023874, ESPRUINOBOARD: 0x40021024 };
const RCC = {
  RMVF: 1 << 24,
  BORRSTF: 1 << 25,
  PINRSTF: 1 << 26,
  PORRSTF: 1 << 27,
  SFTRSTF: 1 << 28,
  IWDGRSTF: 1 << 29,
} as const;
/** Flags a reset sets: every internal reset also pulses NRST (PINRSTF); POR also sets BORRSTF (F4). */
const RESET_FLAGS: Record<EspruinoResetCause, number> = {
  'power-on': RCC.PORRSTF | RCC.PINRSTF | RCC.BORRSTF,
  external: RCC.PINRSTF,
  watchdog: RCC.IWDGRSTF | RCC.PINRSTF,
  software: RCC.SFTRSTF | RCC.PINRSTF,
  'brown-out': RCC.BORRSTF | RCC.PINRSTF,
};

const BANNER = '\r\nEspruino stand-in 2v21 (tether)\r\n>';

export class EspruinoBoard extends EventEmitter<EspruinoBoardEvents> {
  readonly clock: Clock;
  readonly storage: Map<string, Buffer>;
  readonly boardName: string;
  private readonly line: SerialName;
  private readonly hw: EspruinoHardware;
  private readonly rxBufferBytes: number;
  private readonly replBytesPerMs: number;
  private readonly executeCharsPerMs: number;
  private runtime: EspruinoRuntime | null = null;
  private powered = true;
  private rtcOriginMs: number;
  private rccFlags = 0;
  private readonly wd = { enabled: false, auto: true, timeoutMs: 0, timer: undefined as TimerHandle | undefined };
  private deepSleep = false;
  private sleepStartedAt = 0;
  private asleepTotalMs = 0;
  private frozen = false;
  private thawQueue: (() => void)[] = [];
  private readonly errorFlags = new Set<string>();
  // The console UART and the REPL.
  private rxFifo: number[] = [];
  private xoff = false;
  private rxTimer: TimerHandle | undefined;
  private busyUntil = 0;
  private lineText = '';
  private lineEchoOff = false;
  private statement = '';
  private lastWasCR = false;
  private sinceReset: string[] = [];
  private todo: Todo | null = null;
  private todoTimer: TimerHandle | undefined;
  private txBuffer: number[] = [];
  private consoleBuffer: number[] = [];
  private txTimer: TimerHandle | undefined;
  private attached: EspruinoLineTransport | null = null;
  private readonly apis: { deepSleep: boolean; watchdog: boolean };
  private readonly saveMs: number;
  private saving = false;
  private readonly storageWrites: Record<string, number> = {};
  private readonly counters = {
    sleeps: 0,
    rxDropped: 0,
    rxLostAsleep: 0,
    xoffSent: 0,
    boots: 0,
    resets: { 'power-on': 0, external: 0, watchdog: 0, software: 0, 'brown-out': 0 } as Record<EspruinoResetCause, number>,
  };

  constructor(options: EspruinoBoardOptions = {}) {
    super();
    this.clock = options.clock ?? systemClock;
    this.storage = options.storage ?? new Map();
    this.boardName = options.boardName ?? 'PICO_R1_3';
    this.apis = { deepSleep: options.apis?.deepSleep ?? true, watchdog: options.apis?.watchdog ?? true };
    this.saveMs = options.saveMs ?? 400;
    this.line = options.line ?? 'Serial1';
    this.rxBufferBytes = options.rxBufferBytes ?? 512;
    this.replBytesPerMs = options.replBytesPerMs ?? 64;
    this.executeCharsPerMs = options.executeCharsPerMs ?? 256;
    if (options.program !== undefined) this.storage.set('.varimg', Buffer.from(options.program, 'latin1'));
    this.rtcOriginMs = this.clock.now();
    this.hw = this.hardware();
    this.rccFlags = RESET_FLAGS['power-on'];
    this.boot();
  }

  // ---- the outside world ------------------------------------------------------------------

  /** Bytes from the host into the RX pin of the host's line. */
  write(bytes: Uint8Array | readonly number[]): void {
    if (!this.powered) return;
    const rxPin = this.line === 'Serial1' ? 'B7' : 'A3';
    const replOnLine = this.line === this.consoleDevice;
    const forApp: number[] = [];
    for (const byte of bytes) {
      const b = byte & 0xff;
      if (this.inStopMode) {
        // UART off: the byte is lost; its start bit is a falling edge a watch can catch.
        this.counters.rxLostAsleep++;
        this.runtime?.edge(rxPin, false);
        this.runtime?.edge(rxPin, true);
        continue;
      }
      if (!replOnLine) {
        forApp.push(b);
        continue;
      }
      if (this.rxFifo.length >= this.rxBufferBytes) {
        this.counters.rxDropped++;
        this.errorFlags.add('FIFO_FULL');
        continue;
      }
      this.rxFifo.push(b);
      if (!this.xoff && this.rxFifo.length >= (this.rxBufferBytes * 3) / 4) {
        this.xoff = true;
        this.counters.xoffSent++;
        this.transmitRaw([XOFF]);
      }
    }
    if (forApp.length > 0) this.deliverToApp(forApp);
    if (replOnLine) this.scheduleRx(0);
  }

  /** The reset button (NRST): flash and the RTC are kept, the interpreter starts over. */
  reset(): void {
    this.hardReset('external');
  }

  /** Power off and on: flash kept, the RTC restarts at 0. */
  powerCycle(): void {
    this.hardReset('power-on');
  }

  /** Hangs the interpreter (a JS busy loop): the watchdog keeps counting. */
  freeze(): void {
    this.frozen = true;
  }

  /** Ends a hang without a reset: late timers run once, the REPL catches up. */
  thaw(): void {
    if (!this.frozen) return;
    this.frozen = false;
    for (const fn of this.thawQueue.splice(0)) fn();
    this.scheduleRx(0);
  }

  /**
   * Room left in the console's RX buffer, in bytes. A USB CDC link uses it as Espruino's USB
   * does: it stops taking packets from the host while the buffer is full, so nothing is lost.
   */
  get rxBufferFree(): number {
    return this.rxBufferBytes - this.rxFifo.length;
  }

  get runMode(): EspruinoRunMode {
    if (!this.powered) return 'off';
    if (this.frozen) return 'frozen';
    return this.deepSleep ? 'sleeping' : 'running';
  }

  get stats(): EspruinoBoardStats {
    const now = this.clock.now();
    return {
      uptimeMs: now - this.rtcOriginMs,
      asleepMs: this.asleepTotalMs + (this.deepSleep ? now - this.sleepStartedAt : 0),
      sleeps: this.counters.sleeps,
      resets: { ...this.counters.resets },
      rxDropped: this.counters.rxDropped,
      rxLostAsleep: this.counters.rxLostAsleep,
      xoffSent: this.counters.xoffSent,
      boots: this.counters.boots,
      watchdog: { enabled: this.wd.enabled, auto: this.wd.auto, timeoutMs: this.wd.timeoutMs },
      storageWrites: { ...this.storageWrites },
    };
  }

  /** Runs code in the interpreter (a test's back door; the REPL is the front door). */
  evaluate(code: string): unknown {
    const result = this.runtime?.evaluate(code, 'test');
    if (!result) throw new Error('the board is off');
    if (!result.ok) throw result.error;
    return result.value;
  }

  /** A Transport on the host's line (one open at a time, as a serial port). */
  createTransport(): Transport {
    return new EspruinoLineTransport(this);
  }

  /** Powers the board off for good: no timers remain. */
  close(): void {
    if (!this.powered) return;
    this.setDeepSleep(false);
    this.powered = false;
    this.runtime?.dispose();
    this.runtime = null;
    this.stopWatchdog();
    for (const timer of [this.rxTimer, this.txTimer, this.todoTimer]) if (timer !== undefined) this.clock.clearTimeout(timer);
    this.rxTimer = this.txTimer = this.todoTimer = undefined;
    this.thawQueue = [];
  }

  /** @internal */
  attach(transport: EspruinoLineTransport): void {
    if (this.attached && this.attached !== transport) throw new TransportError('busy', `${this.boardName}: line already open`);
    this.attached = transport;
  }

  /** @internal */
  detach(transport: EspruinoLineTransport): void {
    if (this.attached === transport) this.attached = null;
  }

  // ---- the chip -------------------------------------------------------------------------

  private get consoleDevice(): SerialName {
    return 'Serial1';
  }

  private get inStopMode(): boolean {
    return this.deepSleep && !this.frozen;
  }

  private hardware(): EspruinoHardware {
    const board = this;
    return {
      clock: this.clock,
      boardName: this.boardName,
      apis: this.apis,
      countStorageWrite: (name) => {
        board.storageWrites[name] = (board.storageWrites[name] ?? 0) + 1;
      },
      storage: this.storage,
      rtcSeconds: () => (board.clock.now() - board.rtcOriginMs) / 1000,
      enableWatchdog: (timeoutS, auto) => {
        board.wd.enabled = true;
        board.wd.auto = auto;
        board.wd.timeoutMs = timeoutS * 1000;
        board.kickWatchdog();
      },
      kickWatchdog: () => board.kickWatchdog(),
      setDeepSleep: (on) => board.setDeepSleep(on),
      transmit: (device, bytes) => board.transmit(device, bytes),
      consoleDevice: () => board.consoleDevice,
      peek32: (address) => (address === RCC_CSR_BY_BOARD[board.boardName] ? board.rccFlags >>> 0 : 0),
      poke32: (address, value) => {
        if (address === RCC_CSR_BY_BOARD[board.boardName] && value & RCC.RMVF) board.rccFlags = 0;
      },
      requestTodo: (todo) => board.requestTodo(todo),
      isFrozen: () => board.frozen,
      whenThawed: (fn) => board.thawQueue.push(fn),
      print: (text) => board.transmit(board.consoleDevice, espruinoBytes(text)),
      takeErrorFlags: () => {
        const flags = [...board.errorFlags];
        board.errorFlags.clear();
        return flags;
      },
    };
  }

  private kickWatchdog(): void {
    if (!this.wd.enabled || !this.powered) return;
    if (this.wd.timer !== undefined) this.clock.clearTimeout(this.wd.timer);
    this.wd.timer = this.clock.setTimeout(() => this.watchdogExpired(), this.wd.timeoutMs);
  }

  private watchdogExpired(): void {
    this.wd.timer = undefined;
    if (this.wd.auto && !this.frozen) {
      // Automatic mode: Espruino kicks it from its idle loop, which a live interpreter reaches.
      this.kickWatchdog();
      return;
    }
    this.hardReset('watchdog');
  }

  private stopWatchdog(): void {
    if (this.wd.timer !== undefined) this.clock.clearTimeout(this.wd.timer);
    this.wd.timer = undefined;
    this.wd.enabled = false;
    this.wd.auto = true;
    this.wd.timeoutMs = 0;
  }

  private setDeepSleep(on: boolean): void {
    if (on === this.deepSleep) return;
    const now = this.clock.now();
    this.deepSleep = on;
    if (on) {
      this.counters.sleeps++;
      this.sleepStartedAt = now;
      this.emit('sleep');
    } else {
      this.asleepTotalMs += now - this.sleepStartedAt;
      this.emit('wake');
    }
  }

  private hardReset(cause: EspruinoResetCause): void {
    if (!this.powered) return;
    this.counters.resets[cause]++;
    // The flags accumulate until software clears them (RMVF); a power-on starts afresh.
    this.rccFlags = cause === 'power-on' ? RESET_FLAGS[cause] : this.rccFlags | RESET_FLAGS[cause];
    if (cause === 'power-on') this.rtcOriginMs = this.clock.now();
    this.boot();
    this.emit('reset', cause);
  }

  /** After any hardware reset: a fresh interpreter, the saved program, then E.on('init'). */
  private boot(): void {
    this.counters.boots++;
    this.runtime?.dispose();
    this.stopWatchdog();
    this.setDeepSleep(false);
    this.frozen = false;
    this.thawQueue = [];
    this.rxFifo = [];
    this.xoff = false;
    this.busyUntil = 0;
    this.resetReplLine();
    this.todo = null;
    this.runtime = new EspruinoRuntime(this.hw);
    this.hw.print(`${BANNER}`);
    this.loadProgram();
    this.runtime.emitE('init');
  }

  private loadProgram(): void {
    const image = this.storage.get('.varimg');
    this.sinceReset = [];
    if (image) {
      const program = image.toString('latin1');
      this.runtime?.evaluate(program, '.varimg');
      this.sinceReset.push(program);
    }
    const bootCode = this.storage.get('.bootcde');
    if (bootCode) this.runtime?.evaluate(bootCode.toString('latin1'), '.bootcde');
  }

  private requestTodo(todo: Todo): void {
    this.todo = todo;
    if (this.todoTimer === undefined) {
      this.todoTimer = this.clock.setTimeout(() => {
        this.todoTimer = undefined;
        this.runTodoWhenIdle();
      }, 0);
    }
  }

  /**
   * reset()/load()/save()/E.reboot() run once the interpreter is idle: after the statement that
   * asked returned and all queued input has run (Espruino's "todo" flags), so a line sent after
   * `save()` runs before the save.
   */
  private runTodoWhenIdle(): void {
    if (this.todo === null || this.rxFifo.length > 0 || this.saving) return; // processRx calls again once drained
    this.runTodo();
  }

  private runTodo(): void {
    const todo = this.todo;
    this.todo = null;
    if (!todo || !this.runtime || !this.powered) return;
    switch (todo) {
      case 'reboot':
        this.hardReset('software');
        return;
      case 'save': {
        // As Espruino: 'kill', then flash is compacted and written (progress text on the
        // console, a spinner with backspaces) while nothing else runs, then 'init'.
        this.runtime.emitE('kill');
        this.hw.print('Compacting Flash...\r\n/\x08-\x08\\\x08|\x08Calculating Size...\r\nWriting..');
        this.saving = true;
        this.busyUntil = this.clock.now() + this.saveMs;
        const runtime = this.runtime;
        this.todoTimer = this.clock.setTimeout(() => {
          this.todoTimer = undefined;
          this.saving = false;
          if (this.runtime !== runtime || !this.powered) return;
          this.storage.set('.varimg', Buffer.from(this.sinceReset.join('\n;\n'), 'latin1'));
          this.hw.print('\r\n');
          runtime.emitE('init');
          this.emit('saved');
          this.scheduleRx(0);
        }, this.saveMs);
        return;
      }
      case 'reset':
      case 'load':
        this.runtime.emitE('kill');
        this.runtime.dispose();
        this.setDeepSleep(false);
        this.runtime = new EspruinoRuntime(this.hw);
        this.sinceReset = [];
        if (todo === 'reset') {
          this.hw.print(`${BANNER}`);
        } else {
          this.loadProgram();
          this.runtime.emitE('init');
        }
        return;
    }
  }

  // ---- serial lines ---------------------------------------------------------------------

  private transmit(device: SerialName, bytes: readonly number[]): void {
    if (!this.powered || bytes.length === 0) return;
    if (device === this.line) {
      this.transmitRaw(bytes);
    } else if (device === this.consoleDevice) {
      this.consoleBuffer.push(...bytes);
      this.scheduleTx();
    }
  }

  private transmitRaw(bytes: readonly number[]): void {
    for (const b of bytes) this.txBuffer.push(b & 0xff);
    this.scheduleTx();
  }

  /** What the chip sends reaches the other end a moment later (never inside the sender's call). */
  private scheduleTx(): void {
    if (this.txTimer !== undefined) return;
    this.txTimer = this.clock.setTimeout(() => {
      this.txTimer = undefined;
      if (this.consoleBuffer.length > 0) {
        const text = Buffer.from(this.consoleBuffer).toString('latin1');
        this.consoleBuffer = [];
        this.emit('console', text);
      }
      if (this.txBuffer.length > 0) {
        const out = Buffer.from(this.txBuffer);
        this.txBuffer = [];
        this.emit('data', out);
        this.attached?.receive(out);
      }
    }, 0);
  }

  /** Bytes on a line without the REPL: the app's Serial 'data' listeners get them. */
  private deliverToApp(bytes: number[]): void {
    if (this.frozen) {
      this.thawQueue.push(() => this.runtime?.serialData(this.line, bytes));
      return;
    }
    this.runtime?.serialData(this.line, bytes);
  }

  private scheduleRx(delayMs: number): void {
    if (this.rxTimer !== undefined || !this.powered) return;
    this.rxTimer = this.clock.setTimeout(() => {
      this.rxTimer = undefined;
      this.processRx();
    }, delayMs);
  }

  /** The REPL takes bytes out of the RX buffer: a slice at a time, or stops to run a statement. */
  private processRx(): void {
    if (this.frozen || !this.powered) return; // thaw() resumes
    const now = this.clock.now();
    if (now < this.busyUntil) {
      this.scheduleRx(this.busyUntil - now);
      return;
    }
    let budget = this.replBytesPerMs;
    while (this.rxFifo.length > 0 && budget-- > 0) {
      const costMs = this.replByte(this.rxFifo.shift()!);
      if (costMs > 0) {
        this.busyUntil = this.clock.now() + costMs;
        break;
      }
    }
    if (this.xoff && this.rxFifo.length <= this.rxBufferBytes / 4) {
      this.xoff = false;
      this.transmitRaw([XON]);
    }
    if (this.rxFifo.length === 0) this.runTodoWhenIdle();
    if (this.rxFifo.length > 0) this.scheduleRx(Math.max(1, this.busyUntil - this.clock.now()));
  }

  private resetReplLine(): void {
    this.lineText = '';
    this.lineEchoOff = false;
    this.statement = '';
    this.lastWasCR = false;
  }

  /** One byte into the REPL's line editor; returns the time a statement it completed took. */
  private replByte(b: number): number {
    const wasCR = this.lastWasCR;
    this.lastWasCR = b === 0x0d;
    if (b === 0x03) {
      // Ctrl-C: drop the line (and a statement being collected).
      this.resetReplLine();
      return 0;
    }
    if (b === 0x10 && this.lineText === '') {
      this.lineEchoOff = true;
      return 0;
    }
    if (b === 0x0d || b === 0x0a) {
      if (b === 0x0a && wasCR) return 0; // CR LF is one Enter
      return this.enterLine();
    }
    if (b === 0x08 || b === 0x7f) {
      this.lineText = this.lineText.slice(0, -1);
      return 0;
    }
    if (b === XON || b === XOFF || (b < 0x20 && b !== 0x09)) return 0;
    this.lineText += String.fromCharCode(b);
    if (!this.lineEchoOff) this.transmit(this.consoleDevice, [b]);
    return 0;
  }

  private enterLine(): number {
    const echo = !this.lineEchoOff;
    const text = this.statement === '' ? this.lineText : `${this.statement}\n${this.lineText}`;
    this.lineText = '';
    this.lineEchoOff = false;
    if (echo) this.hw.print('\r\n');
    if (text.trim() === '') {
      this.statement = '';
      if (echo) this.hw.print('>');
      return 0;
    }
    if (incomplete(text)) {
      // Espruino counts brackets and waits for the rest of the statement.
      this.statement = text;
      if (echo) this.hw.print(':');
      return 0;
    }
    this.statement = '';
    const result = this.runtime!.evaluate(text);
    if (echo && result.ok) this.hw.print(`=${show(result.value)}\r\n`);
    // Commands that reset, load or save are not part of the program save() keeps.
    if (this.todo === null) this.sinceReset.push(text);
    if (echo) this.hw.print('>');
    this.runTodoWhenIdle();
    return 1 + text.length / this.executeCharsPerMs;
  }
}

/** Whether `code` is a statement cut short (more lines to come), as Espruino's bracket count. */
function incomplete(code: string): boolean {
  try {
    new vm.Script(code); // compiled only, never run
    return false;
  } catch (e) {
    return e instanceof SyntaxError && /Unexpected end of input|Unterminated template/.test(e.message);
  }
}

function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return 'function () { [code] }';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** The host's end of the board's serial line. */
class EspruinoLineTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly description: string;
  private open_ = false;

  constructor(private readonly board: EspruinoBoard) {
    super();
    this.description = `espruino stand-in ${board.boardName}`;
  }

  get isOpen(): boolean {
    return this.open_;
  }

  async open(): Promise<void> {
    this.board.attach(this);
    this.open_ = true;
  }

  write(bytes: Uint8Array): boolean {
    if (!this.open_) return false;
    this.board.write(bytes);
    return true;
  }

  async close(): Promise<void> {
    if (!this.open_) return;
    this.open_ = false;
    this.board.detach(this);
    this.emit('close', null);
  }

  /** @internal */
  receive(bytes: Buffer): void {
    if (this.open_) this.emit('data', bytes);
  }
}
