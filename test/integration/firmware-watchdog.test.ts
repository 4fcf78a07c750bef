import { describe, expect, it } from 'vitest';
import { FirmwareHarness } from '../support/firmware-harness.ts';
import { MessageType, WATCHDOG_MIN_MS } from '../../shared/protocol/index.ts';
import type { DeviceConfig } from '../../shared/protocol/messages.ts';

// The real firmware in the emulator, in emulated time: the watchdog is kicked by the main loop
// only, never while the firmware waits for the UART, and a host cannot set it shorter than the
// loop needs.

function bootedBoard() {
  const board = new FirmwareHarness();
  board.next('hello', 1000);
  return board;
}

const STAY: DeviceConfig = { watchdogMs: 2000, policy: 'stay', hostTimeoutMs: 0, sleepMs: 8000, awakeMs: 1000 };

describe('firmware watchdog', () => {
  it(`refuses a period below ${WATCHDOG_MIN_MS} ms with ERROR out-of-range and changes nothing, in RAM or EEPROM`, () => {
    const board = bootedBoard();
    for (const watchdogMs of [1, 14, 15, 60, WATCHDOG_MIN_MS - 1]) {
      board.send({ type: 'config-set', config: { ...STAY, watchdogMs, policy: 'sleep' } });
      expect(board.next('error', 200)).toEqual({ type: 'error', code: 'out-of-range', offendingType: MessageType.CONFIG_SET });
    }
    board.send({ type: 'config-get' });
    expect(board.next('config', 200).config).toEqual(STAY);
    board.uno.reset();
    expect(board.next('hello', 1000)).toMatchObject({ watchdogMs: 2000, policy: 'stay' });

    // The minimum itself, values rounding down to it, and 0 (off, said explicitly) are taken.
    board.send({ type: 'config-set', config: { ...STAY, watchdogMs: WATCHDOG_MIN_MS + 100 } });
    expect(board.next('config', 200).config.watchdogMs).toBe(WATCHDOG_MIN_MS);
    board.send({ type: 'config-set', config: { ...STAY, watchdogMs: 0 } });
    expect(board.next('config', 200).config.watchdogMs).toBe(0);
  });

  it('the shortest period holds under a flood of capability queries (the longest answers)', () => {
    const board = bootedBoard();
    board.send({ type: 'config-set', config: { ...STAY, watchdogMs: WATCHDOG_MIN_MS } });
    board.next('config', 200);
    const query = [0xf0, 0x6b, 0xf7];
    for (let i = 0; i < 40; i++) board.sendRaw(query); // 120 bytes in: about 6 KB out
    board.uno.advance(3000);
    expect(board.uno.stats.resets.watchdog).toBe(0);
    expect(board.ping(1).seq).toBe(1);
  });

  it('a transmitter that stalls ends in a watchdog reset: the firmware does not kick it while it waits for the UART', () => {
    const board = bootedBoard();
    board.send({ type: 'config-set', config: { ...STAY, watchdogMs: 500 } });
    board.next('config', 200);
    board.ping(1);
    board.uno.stallTx();
    board.uno.once('reset', () => board.uno.resumeTx()); // the reset clears the stall
    board.sendRaw([0xf0, 0x6b, 0xf7]); // the capability list: more than the 64-byte TX buffer
    board.uno.advance(400);
    expect(board.uno.stats.resets.watchdog).toBe(0); // not before its period
    board.runUntil(() => board.uno.stats.resets.watchdog === 1, 600, 1);
    const hello = board.next('hello', 1000);
    expect(hello.resetCauses).toContain('watchdog');
    expect(board.ping(2).seq).toBe(2); // talking again
  });

  it('a short stall that drains again costs bytes, not a reset', () => {
    const board = bootedBoard();
    board.send({ type: 'config-set', config: { ...STAY, watchdogMs: 1000 } });
    board.next('config', 200);
    board.uno.stallTx();
    board.sendRaw([0xf0, 0x6b, 0xf7]);
    board.uno.advance(200); // past the 20 ms stall bound: bytes dropped, kicks stopped
    board.uno.resumeTx();
    board.uno.advance(2000);
    expect(board.uno.stats.resets.watchdog).toBe(0);
    expect(board.ping(3).seq).toBe(3);
  });
});
