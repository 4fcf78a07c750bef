/**
 * A stand-in for the Espruino globals the keepalive module (firmware/espruino/) uses, so the
 * real module file runs in Node inside a `node:vm` context. Each global is documented with
 * what the real Espruino API does (espruino.com/Reference) and what the stand-in models.
 *
 * One EspruinoRuntime is one interpreter lifetime: a reset of any kind disposes it (its
 * timers, watches and listeners die with it) and the board makes a new one, as Espruino
 * clears every JS variable on reset(), load() and on a hardware reset. What outlives a
 * runtime (flash, the RTC, the watchdog, reset flags, the UART) is the EspruinoHardware.
 */
import vm from 'node:vm';
import type { Clock, TimerHandle } from '../../host/time/clock.ts';

export type SerialName = 'Serial1' | 'Serial2' | 'USB';
export type Todo = 'reset' | 'load' | 'save' | 'reboot';

/** What the globals need from the board (the parts of the chip that outlive an interpreter). */
export interface EspruinoHardware {
  readonly clock: Clock;
  /** process.env.BOARD, e.g. 'PICO_R1_3'. */
  readonly boardName: string;
  /** Flash: Storage files by name (bytes). */
  readonly storage: Map<string, Buffer>;
  /**
   * Which optional APIs this Espruino build has. Builds differ: the Linux, nRF52, ESP32,
   * ESP8266 and RP2040 builds have no `setDeepSleep`; a missing API is not defined at all
   * (using it throws ReferenceError, `typeof` gives 'undefined'), as on the real interpreter.
   */
  readonly apis: { deepSleep: boolean; watchdog: boolean };
  /** A Storage write (write/writeJSON) to `name`: flash wears, so the board counts them. */
  countStorageWrite(name: string): void;
  /** getTime(): seconds on the RTC. */
  rtcSeconds(): number;
  enableWatchdog(timeoutS: number, auto: boolean): void;
  kickWatchdog(): void;
  setDeepSleep(on: boolean): void;
  /** Bytes out of a UART's TX pin (or USB). */
  transmit(device: SerialName, bytes: readonly number[]): void;
  /** The device the REPL is on (E.getConsole()). */
  consoleDevice(): SerialName;
  peek32(address: number): number;
  poke32(address: number, value: number): void;
  /** reset(), load(), save(), E.reboot(): Espruino runs them once the interpreter is idle. */
  requestTodo(todo: Todo): void;
  /** A hung interpreter runs no timers or events; `whenThawed` defers them until it runs again. */
  isFrozen(): boolean;
  whenThawed(fn: () => void): void;
  /** Console text: print(), console.log(), uncaught errors. */
  print(text: string): void;
  /** E.getErrorFlags(): returns and clears the flags. */
  takeErrorFlags(): string[];
}

/** Pins the stand-in knows (Espruino Pico names), plus the LEDs and the button. */
const PIN_NAMES = [
  ...Array.from({ length: 16 }, (_, i) => `A${i}`),
  ...Array.from({ length: 16 }, (_, i) => `B${i}`),
  'C13',
  'C14',
  'C15',
];
const PIN_ALIASES: Record<string, string> = { LED1: 'B2', LED2: 'B12', BTN: 'C13', BTN1: 'C13' };

/** Serial devices with their default pins on the Pico (Serial1: TX B6, RX B7). */
const SERIAL_PINS: Record<SerialName, { rx: string | null; tx: string | null }> = {
  Serial1: { rx: 'B7', tx: 'B6' },
  Serial2: { rx: 'A3', tx: 'A2' },
  USB: { rx: null, tx: null },
};

/** Storage file names are at most 28 characters (Espruino 2v00 and later). */
const MAX_FILE_NAME = 28;

interface Timer {
  id: number;
  fn: unknown;
  args: unknown[];
  periodMs: number;
  interval: boolean;
  handle: TimerHandle | undefined;
}

interface Watch {
  id: number;
  fn: unknown;
  pin: string;
  edge: 'rising' | 'falling' | 'both';
  repeat: boolean;
  lastTime: number;
}

/** Bytes of what Espruino's Serial.write/Storage.write accept: numbers, strings, arrays, typed arrays. */
export function espruinoBytes(data: unknown): number[] {
  if (data === undefined || data === null) return [];
  if (typeof data === 'number') return [data & 0xff];
  if (typeof data === 'string') return Array.from(Buffer.from(data, 'latin1'));
  if (ArrayBuffer.isView(data)) return Array.from(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  if (data instanceof ArrayBuffer || Object.prototype.toString.call(data) === '[object ArrayBuffer]') {
    return Array.from(new Uint8Array(data as ArrayBuffer));
  }
  if (Array.isArray(data)) return data.flatMap((d) => espruinoBytes(d));
  if (typeof data === 'object' && 'data' in data) {
    // { data: ..., count: n }: the data repeated `count` times.
    const { data: inner, count } = data as { data: unknown; count?: number };
    const once = espruinoBytes(inner);
    return Array.from({ length: Math.max(1, count ?? 1) }, () => once).flat();
  }
  return Array.from(Buffer.from(String(data), 'latin1'));
}

function describeError(e: unknown): string {
  if (e && typeof e === 'object' && 'message' in e) {
    const name = 'name' in e ? String((e as { name: unknown }).name) : 'Error';
    return `${name}: ${String((e as { message: unknown }).message)}`;
  }
  return String(e);
}

/**
 * A Pin object as Espruino has them (`B7`, `LED1`): the stand-in only needs the name.
 * Real: pin objects with read/write/mode/getInfo; watches and Serial setup take them.
 */
function makePin(name: string) {
  return {
    toString: () => name,
    getInfo: () => ({ port: name[0], num: Number(name.slice(1)) }),
  };
}

/**
 * A Serial device (Serial1, Serial2, USB).
 * Real: `write(data, ...)` sends bytes (numbers, strings, arrays, typed arrays, {data,count});
 * `print`/`println` send text; `on('data', fn)` receives strings of bytes, but NOT on the device
 * that has the console: its input goes to the REPL unless the console is moved with
 * `E.setConsole`/`X.setConsole()`. Stand-in: the same; TX goes to the board's line.
 */
class SerialDevice {
  private readonly listeners = new Map<string, unknown[]>();
  options: { baudRate: number; rx: string | null; tx: string | null } ;

  constructor(
    private readonly hw: EspruinoHardware,
    readonly name: SerialName,
  ) {
    this.options = { baudRate: 9600, ...SERIAL_PINS[name] };
  }

  setup(baudRate?: number, options?: { rx?: unknown; tx?: unknown }): void {
    this.options = {
      baudRate: baudRate ?? 9600,
      rx: options?.rx !== undefined ? String(options.rx) : SERIAL_PINS[this.name].rx,
      tx: options?.tx !== undefined ? String(options.tx) : SERIAL_PINS[this.name].tx,
    };
  }

  write(...data: unknown[]): void {
    this.hw.transmit(this.name, espruinoBytes(data));
  }

  print(text: unknown): void {
    this.hw.transmit(this.name, espruinoBytes(String(text)));
  }

  println(text: unknown): void {
    this.hw.transmit(this.name, espruinoBytes(`${String(text)}\r\n`));
  }

  on(event: string, fn: unknown): void {
    const list = this.listeners.get(event) ?? [];
    list.push(fn);
    this.listeners.set(event, list);
  }

  addListener(event: string, fn: unknown): void {
    this.on(event, fn);
  }

  removeListener(event: string, fn: unknown): void {
    const list = this.listeners.get(event);
    if (!list) return;
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  }

  removeAllListeners(event?: string): void {
    if (event === undefined) this.listeners.clear();
    else this.listeners.delete(event);
  }

  /** Inside: listeners of `event` (the runtime calls them). */
  listenersOf(event: string): unknown[] {
    return [...(this.listeners.get(event) ?? [])];
  }
}

/**
 * `require('Storage')`: the flash file system.
 * Real: `read(name[, offset, length])` -> string or undefined; `readJSON(name, noExceptions)`;
 * `readArrayBuffer(name)`; `write(name, data[, offset, size])` creates/replaces a file (with
 * offset+size: creates a file of `size` bytes and writes `data` at `offset`; with offset only:
 * writes into the existing file); `writeJSON(name, obj)`; `erase(name)`; `list()`. Flash keeps
 * files through every reset and power cycle. Names are at most 28 characters.
 * Stand-in: the same on the board's flash map (byte strings are latin1).
 */
function makeStorage(hw: EspruinoHardware) {
  const checkName = (name: unknown): string => {
    const n = String(name);
    if (n.length === 0 || n.length > MAX_FILE_NAME) throw new Error(`File name ${JSON.stringify(n)} is too long (max ${MAX_FILE_NAME})`);
    return n;
  };
  return {
    read(name: unknown, offset?: number, length?: number): string | undefined {
      const file = hw.storage.get(checkName(name));
      if (!file) return undefined;
      const start = offset ?? 0;
      const end = length === undefined ? file.length : start + length;
      return file.subarray(start, end).toString('latin1');
    },
    readJSON(name: unknown, noExceptions?: boolean): unknown {
      const file = hw.storage.get(checkName(name));
      if (!file) return undefined;
      try {
        return JSON.parse(file.toString('latin1'));
      } catch (e) {
        if (noExceptions) return undefined;
        throw e;
      }
    },
    readArrayBuffer(name: unknown): ArrayBuffer | undefined {
      const file = hw.storage.get(checkName(name));
      return file ? Uint8Array.from(file).buffer : undefined;
    },
    write(name: unknown, data: unknown, offset?: number, size?: number): boolean {
      const n = checkName(name);
      hw.countStorageWrite(n);
      const bytes = espruinoBytes(data);
      if (offset === undefined) {
        hw.storage.set(n, Buffer.from(bytes));
        return true;
      }
      let file = hw.storage.get(n);
      if (size !== undefined) {
        file = Buffer.alloc(size, 0xff);
        hw.storage.set(n, file);
      }
      if (!file || offset + bytes.length > file.length) throw new Error(`Storage: ${n}: write past the end of the file`);
      Buffer.from(bytes).copy(file, offset);
      return true;
    },
    writeJSON(name: unknown, data: unknown): boolean {
      hw.countStorageWrite(checkName(name));
      hw.storage.set(checkName(name), Buffer.from(JSON.stringify(data), 'latin1'));
      return true;
    },
    erase(name: unknown): void {
      hw.storage.delete(checkName(name));
    },
    list(): string[] {
      return [...hw.storage.keys()];
    },
  };
}

/** One interpreter lifetime: the vm context with the Espruino globals, its timers and watches. */
export class EspruinoRuntime {
  readonly context: vm.Context;
  private readonly timers = new Map<number, Timer>();
  private readonly watches = new Map<number, Watch>();
  private readonly eListeners = new Map<string, unknown[]>();
  private readonly serials: Record<SerialName, SerialDevice>;
  private nextTimerId = 1;
  private nextWatchId = 1;
  private disposed = false;

  constructor(private readonly hw: EspruinoHardware) {
    this.serials = {
      Serial1: new SerialDevice(hw, 'Serial1'),
      Serial2: new SerialDevice(hw, 'Serial2'),
      USB: new SerialDevice(hw, 'USB'),
    };
    const sandbox: Record<string, unknown> = {};
    sandbox.global = sandbox;
    for (const name of PIN_NAMES) sandbox[name] = makePin(name);
    for (const [alias, name] of Object.entries(PIN_ALIASES)) sandbox[alias] = makePin(name);
    Object.assign(sandbox, this.serials, this.globals());
    this.context = vm.createContext(sandbox, { name: `espruino ${hw.boardName}` });
  }

  /** Runs code at the root scope, as the REPL or a saved program does; errors are printed, not thrown. */
  evaluate(code: string, filename = 'REPL'): { ok: true; value: unknown } | { ok: false; error: unknown } {
    if (this.disposed) return { ok: false, error: new Error('interpreter disposed') };
    try {
      return { ok: true, value: vm.runInContext(code, this.context, { filename, timeout: 2000 }) };
    } catch (error) {
      this.hw.print(`Uncaught ${describeError(error)}\r\n`);
      return { ok: false, error };
    }
  }

  /** E.emit(event): 'init' after boot, load() and save(); 'kill' before reset(), load() and save(). */
  emitE(event: string, ...args: unknown[]): void {
    for (const fn of [...(this.eListeners.get(event) ?? [])]) this.invoke(fn, args);
  }

  /** A level change on a pin: calls the watches whose edge matches. */
  edge(pin: string, state: boolean): void {
    if (this.disposed) return;
    const now = this.hw.rtcSeconds();
    for (const watch of [...this.watches.values()]) {
      if (watch.pin !== pin) continue;
      if (watch.edge === 'rising' && !state) continue;
      if (watch.edge === 'falling' && state) continue;
      if (!watch.repeat) this.watches.delete(watch.id);
      const lastTime = watch.lastTime;
      watch.lastTime = now;
      this.invoke(watch.fn, [{ state, time: now, lastTime }]);
    }
  }

  /** Bytes received on a UART that is not the console: its 'data' listeners get a string. */
  serialData(device: SerialName, bytes: readonly number[]): void {
    if (this.disposed || bytes.length === 0) return;
    const text = Buffer.from(bytes).toString('latin1');
    for (const fn of this.serials[device].listenersOf('data')) this.invoke(fn, [text]);
  }

  get timerCount(): number {
    return this.timers.size;
  }

  /** The interpreter is gone (reset): nothing of it runs again. */
  dispose(): void {
    this.disposed = true;
    for (const timer of this.timers.values()) if (timer.handle !== undefined) this.hw.clock.clearTimeout(timer.handle);
    this.timers.clear();
    this.watches.clear();
    this.eListeners.clear();
  }

  // ---- inside ---------------------------------------------------------------------------

  private invoke(fn: unknown, args: unknown[]): void {
    if (this.disposed) return;
    try {
      if (typeof fn === 'function') fn(...args);
      else if (typeof fn === 'string') vm.runInContext(fn, this.context, { timeout: 2000 });
    } catch (error) {
      this.hw.print(`Uncaught ${describeError(error)}\r\n`);
    }
  }

  private schedule(timer: Timer): void {
    timer.handle = this.hw.clock.setTimeout(() => this.fire(timer), timer.periodMs);
  }

  private fire(timer: Timer): void {
    timer.handle = undefined;
    if (this.disposed || !this.timers.has(timer.id)) return;
    if (this.hw.isFrozen()) {
      // A hung interpreter runs no timers; they run (late, once) when it runs again.
      this.hw.whenThawed(() => this.fire(timer));
      return;
    }
    if (timer.interval) this.schedule(timer);
    else this.timers.delete(timer.id);
    this.invoke(timer.fn, timer.args);
  }

  private addTimer(fn: unknown, ms: unknown, args: unknown[], interval: boolean): number {
    const periodMs = Math.max(0, Number(ms) || 0);
    const timer: Timer = { id: this.nextTimerId++, fn, args, periodMs, interval, handle: undefined };
    this.timers.set(timer.id, timer);
    this.schedule(timer);
    return timer.id;
  }

  private clearTimer(id: unknown): void {
    if (id === undefined) {
      // Espruino: clearTimeout()/clearInterval() with no argument stop every timer.
      for (const timer of this.timers.values()) if (timer.handle !== undefined) this.hw.clock.clearTimeout(timer.handle);
      this.timers.clear();
      return;
    }
    const timer = this.timers.get(Number(id));
    if (!timer) return;
    if (timer.handle !== undefined) this.hw.clock.clearTimeout(timer.handle);
    this.timers.delete(timer.id);
  }

  private globals(): Record<string, unknown> {
    const hw = this.hw;
    const storage = makeStorage(hw);
    const printArgs = (...args: unknown[]) => hw.print(`${args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ')}\r\n`);
    const E = {
      /**
       * E.enableWatchdog(timeout, isAuto): arms the hardware watchdog for `timeout` seconds.
       * isAuto undefined/true: Espruino kicks it whenever it reaches its idle loop; false: only
       * E.kickWatchdog() kicks it. It cannot be turned off again (STM32 IWDG) and keeps counting
       * in deep sleep. Stand-in: the board resets itself (cause watchdog) when not kicked in time.
       */
      enableWatchdog: (timeout: unknown, isAuto?: unknown) => {
        let t = Number(timeout);
        if (!(t >= 0)) t = 1;
        hw.enableWatchdog(t, isAuto === undefined || Boolean(isAuto));
      },
      /** E.kickWatchdog(): restarts the watchdog's countdown. */
      kickWatchdog: () => hw.kickWatchdog(),
      /** E.getConsole(): the name of the device the REPL is on ('USB', 'Serial1', ...). */
      getConsole: () => hw.consoleDevice(),
      /** E.reboot(): a hardware (software-requested) reset; RAM is lost, flash kept. */
      reboot: () => hw.requestTodo('reboot'),
      /**
       * E.setBootCode(code, alwaysExec): stores code in flash (`.bootcde`) that runs at every boot.
       * Stand-in: the file is written; the board runs it at boot after the saved program.
       */
      setBootCode: (code: unknown) => {
        if (code === undefined || code === '') hw.storage.delete('.bootcde');
        else hw.storage.set('.bootcde', Buffer.from(String(code), 'latin1'));
      },
      /** E.getErrorFlags(): e.g. ['FIFO_FULL'] after received bytes were lost; clears them. */
      getErrorFlags: () => hw.takeErrorFlags(),
      /** E.on('init'|'kill'|..., fn): 'init' runs after boot, load() and save(); 'kill' before reset/load/save. */
      on: (event: string, fn: unknown) => {
        const list = this.eListeners.get(event) ?? [];
        list.push(fn);
        this.eListeners.set(event, list);
      },
      removeListener: (event: string, fn: unknown) => {
        const list = this.eListeners.get(event);
        const i = list ? list.indexOf(fn) : -1;
        if (list && i >= 0) list.splice(i, 1);
      },
      removeAllListeners: (event?: string) => {
        if (event === undefined) this.eListeners.clear();
        else this.eListeners.delete(event);
      },
      emit: (event: string, ...args: unknown[]) => this.emitE(event, ...args),
    };
    const globals: Record<string, unknown> = {
      E,
      /** process.env: BOARD, VERSION, CONSOLE as Espruino reports them. */
      process: { env: { BOARD: hw.boardName, VERSION: '2v21', CONSOLE: hw.consoleDevice() } },
      /** require(name): built-in modules; the stand-in has 'Storage' only (others: "Module not found"). */
      require: (name: string) => {
        if (name === 'Storage') return storage;
        throw new Error(`Module ${name} not found`);
      },
      /**
       * getTime(): seconds (float) on the RTC. Espruino's STM32 RTC keeps counting through
       * resets and deep sleep; a power cycle restarts it at 0. Stand-in: the same, from the clock.
       */
      getTime: () => hw.rtcSeconds(),
      /**
       * setTimeout/setInterval(fn, ms, ...args) -> id; clearTimeout/clearInterval(id) (the same
       * id space; no argument clears every timer); changeInterval(id, ms). Timers keep running in
       * deep sleep: the RTC wakes the chip for them. Stand-in: the board clock; a frozen
       * (hung) interpreter runs none until it thaws.
       */
      setTimeout: (fn: unknown, ms: unknown, ...args: unknown[]) => this.addTimer(fn, ms, args, false),
      setInterval: (fn: unknown, ms: unknown, ...args: unknown[]) => this.addTimer(fn, ms, args, true),
      clearTimeout: (id?: unknown) => this.clearTimer(id),
      clearInterval: (id?: unknown) => this.clearTimer(id),
      changeInterval: (id: unknown, ms: unknown) => {
        const timer = this.timers.get(Number(id));
        if (!timer) throw new Error(`Unknown Interval ${String(id)}`);
        timer.periodMs = Math.max(0, Number(ms) || 0);
        if (timer.handle !== undefined) {
          hw.clock.clearTimeout(timer.handle);
          this.schedule(timer);
        }
      },
      /**
       * setWatch(fn, pin, options) -> id: calls fn({state, time, lastTime}) on a pin's edge
       * (options.edge 'rising'|'falling'|'both', default 'both'; options.repeat, default false;
       * a boolean options is `repeat`). A watch wakes the chip from deep sleep. clearWatch(id),
       * clearWatch() clears all. Stand-in: the board signals edges (the RX pin's start bits).
       */
      setWatch: (fn: unknown, pin: unknown, options?: unknown) => {
        const o = typeof options === 'boolean' ? { repeat: options } : ((options ?? {}) as { repeat?: boolean; edge?: unknown });
        const edge = o.edge === 'rising' || o.edge === 'falling' ? o.edge : o.edge === 1 ? 'rising' : o.edge === -1 ? 'falling' : 'both';
        const watch: Watch = { id: this.nextWatchId++, fn, pin: String(pin), edge, repeat: Boolean(o.repeat), lastTime: hw.rtcSeconds() };
        this.watches.set(watch.id, watch);
        return watch.id;
      },
      clearWatch: (id?: unknown) => {
        if (id === undefined) this.watches.clear();
        else this.watches.delete(Number(id));
      },
      /**
       * setDeepSleep(on): allows STOP mode when idle (STM32): ~100 uA, UARTs off (received bytes
       * are lost; a setWatch on RX wakes it), timers and watches still wake it; not entered while
       * USB is connected. Stand-in: the board drops RX bytes while it is set, turning each into an
       * RX falling edge for the watches, and counts the time.
       */
      setDeepSleep: (on: unknown) => hw.setDeepSleep(Boolean(on)),
      /** peek32(addr)/poke32(addr, value): raw memory. Stand-in: only the STM32 RCC_CSR reset flags. */
      peek32: (address: unknown) => hw.peek32(Number(address)),
      poke32: (address: unknown, value: unknown) => hw.poke32(Number(address), Number(value)),
      /** reset(): clears the program (no hardware reset), runs nothing saved; at idle. */
      reset: () => hw.requestTodo('reset'),
      /** load(): clears RAM and runs the saved program (then 'init'); at idle. */
      load: () => hw.requestTodo('load'),
      /** save(): stores the program in flash (runs 'kill', saves, runs 'init'); at idle. */
      save: () => hw.requestTodo('save'),
      print: printArgs,
      console: { log: printArgs },
    };
    // A build without an API does not define it at all.
    if (!hw.apis.deepSleep) delete globals.setDeepSleep;
    if (!hw.apis.watchdog) {
      const e = E as Partial<typeof E>;
      delete e.enableWatchdog;
      delete e.kickWatchdog;
    }
    return globals;
  }
}
