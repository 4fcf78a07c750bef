import {
  AVRADC,
  AVRClock,
  AVREEPROM,
  AVRIOPort,
  AVRTimer,
  AVRUSART,
  AVRWatchdog,
  CPU,
  adcConfig,
  clockConfig,
  portBConfig,
  portCConfig,
  portDConfig,
  timer0Config,
  timer1Config,
  timer2Config,
  usart0Config,
  watchdogConfig,
  type EEPROMBackend,
} from 'avr8js';
import { REG, SRAM_BYTES, SRAM_START } from './atmega328p.ts';
import { SelfProgramming } from './self-programming.ts';

export const UNO_CLOCK_HZ = 16_000_000;

/** The parts of avr8js's AVRWatchdog that are not in its typings. */
interface WatchdogInternals {
  checkWatchdog: () => void;
  watchdogTimeout: number;
  scheduled: boolean;
  readonly enabled: boolean;
}

/**
 * avr8js 0.21 schedules the watchdog's timeout check once and only moves it when that check
 * fires: a WDTCSR write that shortens the period (2 s in reset mode to 256 ms interrupt ticks,
 * as the firmware does before sleeping) leaves the check at the old, later time, so the first
 * tick comes up to the old period late. On the chip a new prescaler takes effect at once (the
 * counter is reset by the change sequence, datasheet 10.9.2). This wraps the WDTCSR write hook
 * so every write re-schedules the pending check for the period now in force.
 */
function rescheduleWatchdogOnChange(cpu: CPU, watchdog: AVRWatchdog): void {
  const wd = watchdog as unknown as WatchdogInternals;
  const original = cpu.writeHooks[REG.WDTCSR];
  if (!original || typeof wd.checkWatchdog !== 'function') throw new Error('avr8js watchdog internals changed: update rescheduleWatchdogOnChange');
  cpu.writeHooks[REG.WDTCSR] = (value, oldValue, address, mask) => {
    const handled = original(value, oldValue, address, mask);
    cpu.clearClockEvent(wd.checkWatchdog);
    if (wd.enabled) {
      cpu.addClockEvent(wd.checkWatchdog, wd.watchdogTimeout - cpu.cycles);
      wd.scheduled = true;
    } else {
      wd.scheduled = false;
    }
    return handled;
  };
}

/**
 * One ATmega328P from one reset to the next: CPU and peripherals as avr8js models them.
 * A reset builds a new machine (I/O registers back to defaults, SRAM carried over by the
 * caller), which sidesteps avr8js's partial `cpu.reset()`.
 */
export class UnoMachine {
  readonly cpu: CPU;
  readonly clock: AVRClock;
  readonly usart: AVRUSART;
  readonly ports: { B: AVRIOPort; C: AVRIOPort; D: AVRIOPort };
  readonly adc: AVRADC;
  readonly watchdog: AVRWatchdog;
  readonly selfProgramming: SelfProgramming;
  /** Set when the watchdog asks for a system reset; the owner rebuilds the machine. */
  watchdogResetRequested = false;

  constructor(progMem: Uint16Array, eeprom: EEPROMBackend, resetVectorWord: number) {
    const cpu = new CPU(progMem, SRAM_BYTES);
    this.cpu = cpu;
    cpu.pc = resetVectorWord;
    // avr8js's watchdog calls cpu.reset(); turn that into a request the owner acts on.
    cpu.reset = () => {
      this.watchdogResetRequested = true;
    };
    this.clock = new AVRClock(cpu, UNO_CLOCK_HZ, clockConfig);
    new AVRTimer(cpu, timer0Config);
    new AVRTimer(cpu, timer1Config);
    new AVRTimer(cpu, timer2Config);
    this.usart = new AVRUSART(cpu, usart0Config, UNO_CLOCK_HZ);
    this.ports = {
      B: new AVRIOPort(cpu, portBConfig),
      C: new AVRIOPort(cpu, portCConfig),
      D: new AVRIOPort(cpu, portDConfig),
    };
    this.adc = new AVRADC(cpu, adcConfig);
    this.watchdog = new AVRWatchdog(cpu, watchdogConfig, this.clock);
    rescheduleWatchdogOnChange(cpu, this.watchdog);
    new AVREEPROM(cpu, eeprom);
    this.selfProgramming = new SelfProgramming(cpu, UNO_CLOCK_HZ);
  }

  get sram(): Uint8Array {
    return this.cpu.data.subarray(SRAM_START, SRAM_START + SRAM_BYTES);
  }

  set mcusr(value: number) {
    this.cpu.data[REG.MCUSR] = value;
  }

  get mcusr(): number {
    return this.cpu.data[REG.MCUSR]!;
  }

  /** After a watchdog reset the chip keeps the watchdog running (WDE forced by WDRF). */
  armWatchdogAfterReset(): void {
    this.cpu.writeData(REG.WDTCSR, 0x18); // WDCE | WDE: timed change sequence
    this.cpu.writeData(REG.WDTCSR, 0x08); // WDE, 16 ms
  }
}
