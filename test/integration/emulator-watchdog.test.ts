import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { EmulatedUno } from '../../emulator/avr/emulated-uno.ts';
import { compileAvrProgram } from '../support/avr-gcc.ts';
import { FirmwareHarness } from '../support/firmware-harness.ts';

// The emulated watchdog against the datasheet (ATmega328P, 10.9: 128 kHz oscillator; the
// 250 ms setting is 32K cycles = 256 ms, the 1 s setting 128K cycles = 1024 ms), and the
// firmware's sleep accounting against emulated time.

const WDT_250MS_SETTING = 256;
const WDT_1S_SETTING = 1024;

describe('emulated watchdog timing', () => {
  it('a shorter period takes effect at once: the first tick after 2 s -> 250 ms comes 256 ms after the change', () => {
    const hex = compileAvrProgram(fileURLToPath(new URL('../fixtures/avr/watchdog-period.c', import.meta.url)));
    const uno = new EmulatedUno({ firmwareHex: hex });
    const events: Array<{ pin: number; high: boolean; at: number }> = [];
    uno.on('pin', (pin, high) => events.push({ pin, high, at: uno.stats.uptimeMs }));
    uno.advance(6500);

    const switchedAt = events.find((e) => e.pin === 8 && e.high)!.at;
    const ticks = events.filter((e) => e.pin === 9 && e.at > switchedAt).map((e) => e.at);
    const lengthenedAt = events.find((e) => e.pin === 10 && e.high)!.at;
    expect(switchedAt).toBeGreaterThan(2490); // after ~2.5 s of kicks in the 2 s setting (past its first check)
    // Without the fix the first tick came when the check scheduled for the old 2 s period fired.
    expect(ticks[0]! - switchedAt).toBeCloseTo(WDT_250MS_SETTING, 0);
    for (let i = 1; i < 4; i++) expect(ticks[i]! - ticks[i - 1]!).toBeCloseTo(WDT_250MS_SETTING, 0);
    // A longer period (250 ms -> 1 s) also counts from the change.
    const afterLengthening = ticks.filter((t) => t > lengthenedAt);
    expect(afterLengthening[0]! - lengthenedAt).toBeCloseTo(WDT_1S_SETTING, 0);
    expect(afterLengthening[1]! - afterLengthening[0]!).toBeCloseTo(WDT_1S_SETTING, 0);
    expect(uno.stats.resets.watchdog).toBe(0);
  });
});

describe('firmware sleep accounting against emulated time', () => {
  function sleepFor(sleepMs: number, watchdogMs: number) {
    const board = new FirmwareHarness();
    board.next('hello', 500);
    // Awake for a while first, so the watchdog's pending check has been rescheduled by firing.
    board.send({ type: 'config-set', config: { watchdogMs, policy: 'stay', hostTimeoutMs: 0, sleepMs, awakeMs: 100 } });
    board.next('config', 200);
    board.uno.advance(watchdogMs + 500);
    board.send({ type: 'config-set', config: { watchdogMs, policy: 'sleep', hostTimeoutMs: 0, sleepMs, awakeMs: 100 } });
    board.next('config', 200);
    board.next('sleeping', 1000);
    board.runUntil(() => board.uno.runMode === 'sleeping', 100, 1);
    const asleepBefore = board.uno.stats.asleepMs;
    const fellAsleepAt = board.uno.stats.uptimeMs;
    const awake = board.next('awake', sleepMs + 2000, undefined);
    const measured = board.uno.stats.asleepMs - asleepBefore;
    return { awake, measured, wokeAfter: board.uno.stats.uptimeMs - fellAsleepAt };
  }

  it('a 500 ms sleep (2 s reset watchdog before it) reports the time it slept: 512 ms in two 256 ms ticks', () => {
    const { awake, measured } = sleepFor(500, 2000);
    expect(awake.wakeCauses).toEqual(['timer']);
    expect(awake.sleptMs).toBe(512);
    expect(Math.abs(awake.sleptMs - measured)).toBeLessThan(3);
  });

  it('a 4 s sleep (8 s reset watchdog before it) reports 4096 ms, within a few ms of the emulated time asleep, and wakes on time', () => {
    const { awake, measured, wokeAfter } = sleepFor(4000, 8000);
    expect(awake.sleptMs).toBe(4096);
    expect(Math.abs(awake.sleptMs - measured)).toBeLessThan(5);
    expect(wokeAfter).toBeLessThan(4096 + 20);
  });
});
