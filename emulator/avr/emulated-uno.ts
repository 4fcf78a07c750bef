import { EventEmitter } from 'node:events';
import { randomFillSync } from 'node:crypto';
import { avrInstruction, PinState, usart0Config, type AVRIOPort, type CPU } from 'avr8js';
import {
  BOOT_SECTION_WORD,
  FLASH_BYTES,
  EEPROM_BYTES,
  MCUSR_FLAG,
  OPCODE,
  POWER_DOWN_WAKE_VECTORS,
  REG,
  sleepModeFromSmcr,
  unoPin,
  type SleepMode,
} from './atmega328p.ts';
import { FileEeprom } from './eeprom-file.ts';
import { loadIntelHex } from '../../host/flash/intel-hex.ts';
import { UNO_CLOCK_HZ, UnoMachine } from './uno-machine.ts';
import { systemClock, type Clock, type TimerHandle } from '../../host/time/clock.ts';

export type ResetCause = 'power-on' | 'external' | 'brown-out' | 'watchdog';
export type RunMode = 'running' | 'sleeping' | 'frozen';

export interface EmulatedUnoOptions {
  /** Intel HEX text of the application (our firmware). */
  firmwareHex: string;
  /** Intel HEX text of a bootloader (Optiboot); when given, resets start at the boot section. */
  bootloaderHex?: string;
  /** File that keeps the EEPROM across runs; in memory only when omitted. */
  eepromPath?: string;
  /** Emulated seconds per wall-clock second when started (1 = real time). */
  speed?: number;
  clock?: Clock;
}

export interface EmulatorStats {
  /** Emulated milliseconds since the last power-on. */
  uptimeMs: number;
  /** Total emulated milliseconds spent in SLEEP since the emulator was created. */
  asleepMs: number;
  sleeps: number;
  lastSleepMode: SleepMode | null;
  resets: Record<ResetCause, number>;
  /** Bytes from the host that the MCU could not receive (asleep or UART off), as on hardware. */
  rxDropped: number;
  /** Bytes from the host not yet in the UART (they enter one byte time apart). */
  rxPending: number;
  /** Bytes from the host that entered the UART (whether or not the firmware read them in time). */
  rxDelivered: number;
  /** Bytes that entered the UART while the one before was still unread in UDR0 (data overrun: that one is lost). */
  rxOverrun: number;
  flashPagesWritten: number;
}

interface EmulatedUnoEvents {
  data: [Buffer];
  pin: [pin: number, high: boolean];
  reset: [ResetCause];
  sleep: [SleepMode];
  wake: [];
}

const CYCLES_PER_MS = UNO_CLOCK_HZ / 1000;
/** Wall-clock slice between runs of the emulator loop. */
const SLICE_MS = 2;
/** When the host falls further behind than this, slip instead of bursting to catch up. */
const MAX_LAG_MS = 50;
const FLUSH_EEPROM_EVERY_MS = 500;

/**
 * An Arduino Uno (ATmega328P at 16 MHz) on avr8js, paced to the wall clock, with the parts
 * avr8js lacks (SLEEP, SPM, resets that keep SRAM) and the outside world of a board:
 * a serial line, pins to drive, a reset button, a power switch and a way to hang the MCU.
 */
export class EmulatedUno extends EventEmitter<EmulatedUnoEvents> {
  private readonly progMem = new Uint16Array(FLASH_BYTES / 2);
  private readonly eeprom: FileEeprom;
  private readonly resetVectorWord: number;
  private readonly clock: Clock;
  private readonly speed: number;
  private machine!: UnoMachine;
  /** Cycles run by machines before the current one, since power-on and in total. */
  private cyclesBeforeMachine = 0;
  private powerOnCycles = 0;
  /** Flash pages written by machines before the current one (a reset builds a new machine). */
  private pagesWrittenBefore = 0;
  private mode: RunMode = 'running';
  private sleepStartedAt = 0;
  private asleepCycles = 0;
  private readonly rxQueue: number[] = [];
  private readonly recentRx = new Uint8Array(64);
  private txBuffer: number[] = [];
  private readonly digitalInputs = new Map<number, boolean>();
  private readonly analogInputs = new Map<number, number>();
  private readonly outputs = new Map<number, boolean>();
  private timer: TimerHandle | undefined;
  /** The UART's transmitter is stalled: the byte in UDR does not leave (see stallTx()). */
  private txStalled = false;
  private heldTx: number[] = [];
  private anchorTime = 0;
  private anchorCycles = 0;
  private lastEepromFlush = 0;
  private readonly counters = {
    sleeps: 0,
    lastSleepMode: null as SleepMode | null,
    rxDropped: 0,
    rxDelivered: 0,
    rxOverrun: 0,
    resets: { 'power-on': 0, external: 0, 'brown-out': 0, watchdog: 0 } as Record<ResetCause, number>,
  };

  constructor(options: EmulatedUnoOptions) {
    super();
    const flash = new Uint8Array(this.progMem.buffer);
    flash.fill(0xff);
    loadIntelHex(options.firmwareHex, flash);
    if (options.bootloaderHex) loadIntelHex(options.bootloaderHex, flash);
    this.resetVectorWord = options.bootloaderHex ? BOOT_SECTION_WORD : 0;
    this.eeprom = new FileEeprom(EEPROM_BYTES, options.eepromPath);
    this.clock = options.clock ?? systemClock;
    this.speed = options.speed ?? 1;
    if (!(this.speed > 0)) throw new RangeError(`speed must be > 0, not ${options.speed}`);
    this.build('power-on', null);
  }

  // ---- the outside world ------------------------------------------------------------

  /** The last bytes from the host that entered the UART, oldest first (for a test's failure message). */
  lastBytesIn(): number[] {
    const n = this.counters.rxDelivered;
    const size = this.recentRx.length;
    const out: number[] = [];
    for (let i = Math.max(0, n - size); i < n; i++) out.push(this.recentRx[i % size]!);
    return out;
  }

  /** Bytes from the host to the MCU's RX pin, delivered at the UART's baud rate. */
  write(bytes: Uint8Array | readonly number[]): void {
    for (const b of bytes) this.rxQueue.push(b & 0xff);
    this.pumpRx();
  }

  /** Presses the reset button (external reset: SRAM kept, MCUSR.EXTRF). */
  reset(): void {
    this.build('external', this.machine);
  }

  /** A supply dip below the brown-out level: SRAM content is not trustworthy afterwards. */
  brownOut(): void {
    this.build('brown-out', this.machine);
  }

  /** Power off and on: SRAM (and no-init state) lost, EEPROM and flash kept. */
  powerCycle(): void {
    this.build('power-on', this.machine);
  }

  /** Hangs the MCU (no instruction runs, interrupts off) while its watchdog keeps counting. */
  freeze(): void {
    if (this.mode === 'sleeping') this.endSleep();
    this.mode = 'frozen';
  }

  /** Ends a hang without a reset. */
  thaw(): void {
    if (this.mode === 'frozen') this.mode = 'running';
  }

  /**
   * Stalls the UART's transmitter: the byte the firmware writes to UDR0 does not leave and
   * UDRE0 stays clear, so nothing more can be sent (as if TXEN were lost or the shift register
   * stopped). Lasts across resets until resumeTx(). For testing what firmware does when a
   * transmit never completes.
   */
  stallTx(): void {
    this.txStalled = true;
  }

  /** Ends stallTx(): the held byte goes out and the transmitter runs again. */
  resumeTx(): void {
    this.txStalled = false;
    const held = this.heldTx.splice(0);
    const hook = this.originalUdrHook;
    for (const value of held) hook?.(value, 0, usart0Config.UDR, 0xff);
  }

  private originalUdrHook: ((value: number, old: number, address: number, mask: number) => boolean | void) | undefined;

  setDigitalInput(pin: number, high: boolean): void {
    const { port, bit } = unoPin(pin);
    this.digitalInputs.set(pin, high);
    this.machine.ports[port].setPin(bit, high);
  }

  /** Voltage on analog channel 0-5 (A0-A5), 0-5 V against the default AVcc reference. */
  setAnalogInput(channel: number, volts: number): void {
    if (!Number.isInteger(channel) || channel < 0 || channel > 5) throw new RangeError(`analog channel 0-5, not ${channel}`);
    this.analogInputs.set(channel, volts);
    this.machine.adc.channelValues[channel] = volts;
  }

  /** The level the MCU drives on a pin, or null when the pin is not an output. */
  digitalOutput(pin: number): boolean | null {
    const { port, bit } = unoPin(pin);
    const state = this.machine.ports[port].pinState(bit);
    if (state === PinState.High) return true;
    if (state === PinState.Low) return false;
    return null;
  }

  get runMode(): RunMode {
    return this.mode;
  }

  get baudRate(): number {
    return this.machine.usart.baudRate;
  }

  get stats(): EmulatorStats {
    const asleep = this.asleepCycles + (this.mode === 'sleeping' ? this.totalCycles - this.sleepStartedAt : 0);
    return {
      uptimeMs: (this.totalCycles - this.powerOnCycles) / CYCLES_PER_MS,
      asleepMs: asleep / CYCLES_PER_MS,
      sleeps: this.counters.sleeps,
      lastSleepMode: this.counters.lastSleepMode,
      resets: { ...this.counters.resets },
      rxDropped: this.counters.rxDropped,
      rxPending: this.rxQueue.length,
      rxDelivered: this.counters.rxDelivered,
      rxOverrun: this.counters.rxOverrun,
      flashPagesWritten: this.pagesWrittenBefore + this.machine.selfProgramming.pagesWritten,
    };
  }

  /** Flash as the MCU now holds it (bootloaders may have rewritten it). */
  get flash(): Uint8Array {
    return new Uint8Array(this.progMem.buffer);
  }

  // ---- running ----------------------------------------------------------------------

  /** Runs paced to the wall clock (times `speed`) until stop(). */
  start(): void {
    if (this.timer) return;
    this.anchorTime = this.clock.now();
    this.anchorCycles = this.totalCycles;
    this.lastEepromFlush = this.anchorTime;
    this.timer = this.clock.setTimeout(this.slice, SLICE_MS);
  }

  stop(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.flushTx();
    this.eeprom.flush();
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  /** Runs `ms` of emulated time now, as fast as the host can (for tests and tools). */
  advance(ms: number): void {
    this.runUntil(this.totalCycles + ms * CYCLES_PER_MS);
    this.flushTx();
  }

  private readonly slice = (): void => {
    const now = this.clock.now();
    let target = this.anchorCycles + (now - this.anchorTime) * CYCLES_PER_MS * this.speed;
    const maxLag = MAX_LAG_MS * CYCLES_PER_MS * this.speed;
    if (target - this.totalCycles > maxLag) {
      // The event loop was busy elsewhere: slip the anchor rather than block it now.
      target = this.totalCycles + maxLag;
      this.anchorTime = now;
      this.anchorCycles = target;
    }
    this.runUntil(target);
    this.flushTx();
    if (now - this.lastEepromFlush >= FLUSH_EEPROM_EVERY_MS) {
      this.eeprom.flush();
      this.lastEepromFlush = now;
    }
    if (this.timer !== undefined) this.timer = this.clock.setTimeout(this.slice, SLICE_MS);
  };

  private get totalCycles(): number {
    return this.cyclesBeforeMachine + this.machine.cpu.cycles;
  }

  private runUntil(targetTotal: number): void {
    while (this.totalCycles < targetTotal) {
      const machine = this.machine;
      const limit = targetTotal - this.cyclesBeforeMachine;
      if (this.mode === 'running') this.execute(machine, limit);
      else this.idle(machine, limit);
      if (machine.watchdogResetRequested) this.build('watchdog', machine);
    }
  }

  /** The instruction loop, with SLEEP and SPM handled here since avr8js makes them no-ops. */
  private execute(machine: UnoMachine, limit: number): void {
    const { cpu } = machine;
    const progMem = cpu.progMem;
    // Imported bindings are read through getters under tsx; keep the hot loop on locals.
    const sleepOp = OPCODE.SLEEP;
    const spmOp = OPCODE.SPM;
    const spmIncOp = OPCODE.SPM_Z_INC;
    const smcr = REG.SMCR;
    const instruction = avrInstruction;
    while (cpu.cycles < limit) {
      const opcode = progMem[cpu.pc];
      if (opcode === sleepOp && cpu.data[smcr]! & 0x01) {
        cpu.pc += 1;
        cpu.cycles += 1;
        this.enterSleep(sleepModeFromSmcr(cpu.data[REG.SMCR]!));
        return;
      }
      if (opcode === spmOp || opcode === spmIncOp) {
        machine.selfProgramming.execute(opcode === spmIncOp);
      } else {
        instruction(cpu);
      }
      cpu.tick();
      if (machine.watchdogResetRequested) return;
    }
  }

  /**
   * Time passes without instructions (asleep or hung): clock events such as the watchdog
   * still fire, but no interrupt is serviced; a wake-up interrupt ends sleep.
   */
  private idle(machine: UnoMachine, limit: number): void {
    const { cpu } = machine;
    const events = cpu as unknown as { nextClockEvent: { cycles: number } | null; pendingInterrupts: unknown[] };
    while (cpu.cycles < limit) {
      const next = events.nextClockEvent?.cycles;
      cpu.cycles = next !== undefined && next < limit ? Math.max(next, cpu.cycles) : limit;
      const sreg = cpu.data[REG.SREG]!;
      cpu.data[REG.SREG] = sreg & 0x7f;
      while (events.nextClockEvent && events.nextClockEvent.cycles <= cpu.cycles) {
        cpu.tick();
        if (machine.watchdogResetRequested) break;
      }
      cpu.data[REG.SREG] = sreg;
      if (machine.watchdogResetRequested) return;
      if (this.mode === 'sleeping') {
        this.pumpRx();
        if (this.wakeInterruptPending(events.pendingInterrupts)) {
          this.endSleep();
          this.emit('wake');
          return;
        }
      }
    }
  }

  private wakeInterruptPending(pending: unknown[]): boolean {
    const mode = this.counters.lastSleepMode;
    if (mode === 'idle' || mode === 'adc-noise') return this.machine.cpu.nextInterrupt >= 0;
    return POWER_DOWN_WAKE_VECTORS.some((v) => pending[v]);
  }

  private enterSleep(mode: SleepMode): void {
    this.mode = 'sleeping';
    this.sleepStartedAt = this.totalCycles;
    this.counters.sleeps++;
    this.counters.lastSleepMode = mode;
    this.emit('sleep', mode);
  }

  private endSleep(): void {
    this.asleepCycles += this.totalCycles - this.sleepStartedAt;
    this.mode = 'running';
  }

  // ---- serial -----------------------------------------------------------------------

  private pumpRx(): void {
    const { usart, ports } = this.machine;
    while (this.rxQueue.length > 0) {
      if (this.mode === 'sleeping') {
        // The UART is off in power-down: the start bit only toggles RXD (PD0), which can
        // raise a pin-change interrupt; the byte itself is lost, as on the chip.
        this.rxQueue.shift();
        this.counters.rxDropped++;
        ports.D.setPin(0, false);
        ports.D.setPin(0, true);
        return;
      }
      if (!usart.rxEnable) {
        this.counters.rxDropped += this.rxQueue.length;
        this.rxQueue.length = 0;
        return;
      }
      if (usart.rxBusy) return;
      const byte = this.rxQueue.shift()!;
      usart.writeByte(byte);
      this.recentRx[this.counters.rxDelivered++ % this.recentRx.length] = byte;
    }
  }

  private flushTx(): void {
    if (this.txBuffer.length === 0) return;
    const chunk = Buffer.from(this.txBuffer);
    this.txBuffer = [];
    this.emit('data', chunk);
  }

  // ---- resets -----------------------------------------------------------------------

  private build(cause: ResetCause, previous: UnoMachine | null): void {
    if (previous) {
      this.cyclesBeforeMachine += previous.cpu.cycles;
      this.pagesWrittenBefore += previous.selfProgramming.pagesWritten;
      if (this.mode === 'sleeping') this.endSleep();
    }
    const machine = new UnoMachine(this.progMem, this.eeprom, this.resetVectorWord);
    if (cause === 'power-on' || !previous) {
      // SRAM powers up to noise, so a no-init block must fail its check.
      randomFillSync(machine.sram);
      machine.mcusr = MCUSR_FLAG.PORF;
      this.powerOnCycles = this.cyclesBeforeMachine;
    } else {
      machine.sram.set(previous.sram);
      const flag = { external: MCUSR_FLAG.EXTRF, 'brown-out': MCUSR_FLAG.BORF, watchdog: MCUSR_FLAG.WDRF }[cause];
      machine.mcusr = previous.mcusr | flag;
      if (cause === 'watchdog') machine.armWatchdogAfterReset();
    }
    this.machine = machine;
    this.mode = 'running';
    machine.usart.onByteTransmit = (value) => this.txBuffer.push(value);
    this.wrapTransmitter(machine);
    keepUnreadReceive(machine);
    let unread = false;
    machine.usart.onRxComplete = () => {
      if (unread) this.counters.rxOverrun++;
      unread = true;
      this.pumpRx();
    };
    const readUdr = machine.cpu.readHooks[usart0Config.UDR]!;
    machine.cpu.readHooks[usart0Config.UDR] = (address) => {
      unread = false;
      return readUdr(address);
    };
    machine.ports.D.setPin(0, true); // idle serial line is high
    for (const [pin, high] of this.digitalInputs) this.setDigitalInput(pin, high);
    for (const [channel, volts] of this.analogInputs) this.setAnalogInput(channel, volts);
    for (const port of ['B', 'C', 'D'] as const) this.watchOutputs(port, machine.ports[port]);
    this.counters.resets[cause]++;
    this.rxQueue.length = 0; // bytes in flight during a reset are lost
    if (previous) this.emit('reset', cause);
  }

  /** UDR0 writes go through here so stallTx() can hold them. */
  private wrapTransmitter(machine: UnoMachine): void {
    const { cpu, usart } = machine;
    const original = cpu.writeHooks[usart0Config.UDR]!;
    this.originalUdrHook = original;
    this.heldTx = [];
    type Interrupt = Parameters<CPU['clearInterrupt']>[0];
    const internals = usart as unknown as { UDRE: Interrupt; TXC: Interrupt };
    cpu.writeHooks[usart0Config.UDR] = (value, old, address, mask) => {
      if (!this.txStalled) return original(value, old, address, mask);
      this.heldTx.push(value);
      cpu.clearInterrupt(internals.TXC);
      cpu.clearInterrupt(internals.UDRE);
      return true;
    };
  }

  private watchOutputs(port: 'B' | 'C' | 'D', io: AVRIOPort): void {
    const first = { D: 0, B: 8, C: 14 }[port];
    const count = { D: 8, B: 6, C: 6 }[port];
    const check = () => {
      for (let bit = 0; bit < count; bit++) {
        const pin = first + bit;
        const state = io.pinState(bit);
        const high = state === PinState.High ? true : state === PinState.Low ? false : null;
        const before = this.outputs.get(pin) ?? null;
        if (high === before) continue;
        if (high === null) this.outputs.delete(pin);
        else this.outputs.set(pin, high);
        if (high !== null) this.emit('pin', pin, high);
      }
    };
    io.addListener(check);
    check();
  }
}

const UCSR0A_RXC = 0x80;
const UCSR0B_RXEN = 0x10;

/**
 * avr8js (0.21) clears a pending receive-complete (RXC0 and its interrupt) whenever UCSR0B is
 * written with the receiver staying on. On the chip RXC0 is cleared only by reading UDR0 (or by
 * turning the receiver off), and Arduino's HardwareSerial writes UCSR0B at every transmit start
 * and end (UDRIE0): a byte that came in just before was never read and the next one overwrote it
 * (seen as a Firmata command lost now and then, under load, while the board was sending).
 * Turning the receiver off does flush it, as the datasheet says.
 */
export function keepUnreadReceive(machine: UnoMachine): void {
  const { cpu, usart } = machine;
  type Interrupt = Parameters<CPU['setInterruptFlag']>[0];
  const rxc = (usart as unknown as { RXC: Interrupt }).RXC;
  const writeUcsrb = cpu.writeHooks[usart0Config.UCSRB]!;
  cpu.writeHooks[usart0Config.UCSRB] = (value, old, address, mask) => {
    const unread = (cpu.data[usart0Config.UCSRA]! & UCSR0A_RXC) !== 0;
    const handled = writeUcsrb(value, old, address, mask);
    if (value & UCSR0B_RXEN) {
      if (unread) cpu.setInterruptFlag(rxc);
    } else if (unread) {
      cpu.clearInterrupt(rxc); // the receiver off flushes its buffer (which avr8js does not do)
    }
    return handled;
  };
}
