import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FirmwareHarness, firmata } from '../support/firmware-harness.ts';
import { encodeFrame } from '../../shared/protocol/index.ts';

// The real firmware (firmware/avr/tether.hex) in the emulator, in emulated time.

function bootedBoard(options: { eepromPath?: string } = {}) {
  const board = new FirmwareHarness(options);
  const hello = board.next('hello', 1000);
  return { board, hello };
}

describe('firmware keepalive extension', () => {
  it('announces itself on boot: Firmata version, firmware name, then HELLO', () => {
    const { board, hello } = bootedBoard();
    expect(board.firmata.slice(0, 3)).toEqual([0xf9, 2, 5]);
    const name = board.firmata.indexOf(0x79);
    expect(board.firmata[name - 1]).toBe(0xf0);
    expect(hello).toMatchObject({
      name: 'tether',
      reply: false,
      resetCauses: ['power-on'],
      stateSurvived: false,
      pinsRestored: false,
      stateSize: 32,
      watchdogMs: 2000,
      policy: 'stay',
      capabilities: { watchdog: true, sleep: true, state: true, pinRestore: true, beats: true },
    });
  });

  it('answers HELLO_REQUEST with a HELLO marked as a reply', () => {
    const { board, hello } = bootedBoard();
    board.send({ type: 'hello-request' });
    const reply = board.next('hello', 200);
    expect(reply.reply).toBe(true);
    expect(reply.bootId).toBe(hello.bootId);
  });

  it('counts boots in EEPROM across resets and power cycles', () => {
    const eepromPath = join(mkdtempSync(join(tmpdir(), 'tether-eeprom-')), 'eeprom.bin');
    const { board, hello } = bootedBoard({ eepromPath });
    board.uno.reset();
    const second = board.next('hello', 1000);
    board.uno.powerCycle();
    const third = board.next('hello', 1000);
    expect([second.bootId - hello.bootId, third.bootId - second.bootId]).toEqual([1, 1]);
    expect(second.resetCauses).toContain('external');
    board.uno.stop(); // writes the EEPROM file
    const { hello: afterRestart } = bootedBoard({ eepromPath });
    expect(afterRestart.bootId).toBe(third.bootId + 1);
  });

  it('round-trips PING/PONG with the same sequence, a rising uptime and the lease', () => {
    const { board, hello } = bootedBoard();
    const first = board.ping(1, 0);
    board.uno.advance(100);
    const second = board.ping(16383, 5000);
    expect(first.bootId).toBe(hello.bootId);
    expect(second.uptimeMs - first.uptimeMs).toBeGreaterThanOrEqual(100);
    expect(first.leaseActive).toBe(false);
    expect(second.leaseActive).toBe(true);
    expect(second.leaseRemainingMs).toBeGreaterThan(4900);
    expect(second.leaseRemainingMs).toBeLessThanOrEqual(5000);
  });

  it('a frozen MCU is reset by its watchdog, and the next HELLO says so', () => {
    const { board } = bootedBoard();
    board.ping(1);
    board.uno.freeze();
    const mark = board.mark();
    board.uno.advance(1500);
    expect(board.since(mark)).toEqual([]); // hung: silent, and not yet reset
    const hello = board.next('hello', 1500);
    expect(hello.resetCauses).toContain('watchdog');
    expect(board.uno.stats.resets.watchdog).toBe(1);
  });

  it('a watchdog reset keeps the state registers and the pin outputs', () => {
    const { board } = bootedBoard();
    board.send({ type: 'state-write', offset: 4, data: Uint8Array.from([1, 2, 3, 250]) });
    expect([...board.next('state-data', 200).data]).toEqual([1, 2, 3, 250]);
    board.sendRaw([...firmata.setPinMode(13, firmata.MODE.OUTPUT), ...firmata.setDigitalPin(13, 1)]);
    board.runUntil(() => board.uno.digitalOutput(13) === true, 100);

    board.uno.freeze();
    const hello = board.next('hello', 3000);
    expect(hello).toMatchObject({ stateSurvived: true, pinsRestored: true });
    expect(hello.resetCauses).toContain('watchdog');
    expect(board.uno.digitalOutput(13)).toBe(true);
    expect([...board.readState(4, 4)]).toEqual([1, 2, 3, 250]);
  });

  it('a power cycle loses the registers and the pin outputs, and HELLO says so', () => {
    const { board } = bootedBoard();
    board.send({ type: 'state-write', offset: 0, data: Uint8Array.from([9, 9]) });
    board.next('state-data', 200);
    board.sendRaw([...firmata.setPinMode(13, firmata.MODE.OUTPUT), ...firmata.setDigitalPin(13, 1)]);
    board.runUntil(() => board.uno.digitalOutput(13) === true, 100);

    board.uno.powerCycle();
    const hello = board.next('hello', 1000);
    expect(hello).toMatchObject({ stateSurvived: false, pinsRestored: false, resetCauses: ['power-on'] });
    // Back to Firmata defaults (StandardFirmata boots digital pins as low outputs), not HIGH.
    expect(board.uno.digitalOutput(13)).not.toBe(true);
    expect([...board.readState(0, 2)]).toEqual([0, 0]);
  });

  it('a brown-out is treated like a power cycle: no state trusted', () => {
    const { board } = bootedBoard();
    board.send({ type: 'state-write', offset: 0, data: Uint8Array.from([7]) });
    board.next('state-data', 200);
    board.uno.brownOut();
    const hello = board.next('hello', 1000);
    expect(hello.resetCauses).toContain('brown-out');
    expect(hello.stateSurvived).toBe(false);
    expect([...board.readState(0, 1)]).toEqual([0]);
  });

  it('stores CONFIG in EEPROM and rounds the watchdog down to a supported step', () => {
    const { board } = bootedBoard();
    board.send({ type: 'config-set', config: { watchdogMs: 1100, policy: 'reset', hostTimeoutMs: 0, sleepMs: 3000, awakeMs: 400 } });
    expect(board.next('config', 200).config).toEqual({ watchdogMs: 1000, policy: 'reset', hostTimeoutMs: 0, sleepMs: 3000, awakeMs: 400 });
    board.uno.powerCycle();
    const hello = board.next('hello', 1000);
    expect(hello).toMatchObject({ watchdogMs: 1000, policy: 'reset' });
  });

  it('with policy reset, a lost host makes the device reset itself', () => {
    const { board } = bootedBoard();
    board.send({ type: 'config-set', config: { watchdogMs: 500, policy: 'reset', hostTimeoutMs: 300, sleepMs: 8000, awakeMs: 1000 } });
    board.next('config', 200);
    board.ping(1, 0);
    const hello = board.next('hello', 2000);
    expect(hello.resetCauses).toContain('watchdog');
  });
});

describe('firmware sleep and keep-awake lease', () => {
  function sleepyBoard() {
    const { board } = bootedBoard();
    board.send({ type: 'config-set', config: { watchdogMs: 2000, policy: 'sleep', hostTimeoutMs: 0, sleepMs: 3000, awakeMs: 300 } });
    board.next('config', 200);
    return board;
  }

  it('sleeps with no lease, measured by the emulator, and wakes on RX with AWAKE', () => {
    const board = sleepyBoard();
    const sleeping = board.next('sleeping', 1000);
    expect(sleeping.durationMs).toBe(3000);
    expect(sleeping.wakeSources).toEqual(expect.arrayContaining(['timer', 'serial']));
    board.runUntil(() => board.uno.runMode === 'sleeping', 100);
    board.uno.advance(1000);
    expect(board.uno.stats.asleepMs).toBeGreaterThan(900);
    expect(board.uno.stats.lastSleepMode).toBe('power-down');

    board.sendRaw([0x00]); // the wake byte
    const awake = board.next('awake', 300);
    expect(awake.wakeCauses).toEqual(['serial']);
    expect(awake.sleptMs).toBeGreaterThan(700);
    expect(awake.sleptMs).toBeLessThan(1300);
    // Awake again: it answers, and its clock counted the time asleep.
    const pong = board.ping(5, 0);
    expect(pong.uptimeMs).toBeGreaterThan(1000);
  });

  it('wakes by itself after sleep_ms and goes back to sleep while nobody holds a lease', () => {
    const board = sleepyBoard();
    board.next('sleeping', 1000);
    const awake = board.next('awake', 4000);
    expect(awake.wakeCauses).toEqual(['timer']);
    expect(awake.sleptMs).toBeGreaterThanOrEqual(2750);
    board.next('sleeping', 1000);
    expect(board.uno.stats.sleeps).toBeGreaterThanOrEqual(2);
  });

  it('sleep_ms 0 means asleep until woken: SLEEPING(0, serial only), no timer wake-up, AWAKE on RX', () => {
    const { board } = bootedBoard();
    board.send({ type: 'config-set', config: { watchdogMs: 2000, policy: 'sleep', hostTimeoutMs: 0, sleepMs: 0, awakeMs: 300 } });
    board.next('config', 200);
    const sleeping = board.next('sleeping', 1000);
    expect(sleeping).toEqual({ type: 'sleeping', durationMs: 0, wakeSources: ['serial'] });
    board.runUntil(() => board.uno.runMode === 'sleeping', 100);
    const mark = board.mark();
    board.uno.advance(10_000);
    expect(board.since(mark)).toEqual([]);
    expect(board.uno.runMode).toBe('sleeping');
    board.sendRaw([0x00]);
    const awake = board.next('awake', 300);
    expect(awake.wakeCauses).toEqual(['serial']);
    expect(awake.sleptMs).toBeGreaterThan(9_900);
  });

  it('PINGs without a lease do not keep it awake (only a lease or other commands do)', () => {
    const board = sleepyBoard();
    let asleep = false;
    for (let seq = 1; seq <= 10 && !asleep; seq++) {
      board.send({ type: 'ping', seq, leaseMs: 0 });
      board.uno.advance(100);
      asleep = board.uno.runMode === 'sleeping';
    }
    expect(asleep).toBe(true);
  });

  it('never sleeps while a lease is held', () => {
    const board = sleepyBoard();
    for (let seq = 1; seq <= 20; seq++) {
      expect(board.ping(seq, 1000).leaseActive).toBe(true);
      board.uno.advance(250);
    }
    expect(board.uno.stats.sleeps).toBe(0);
    expect(board.uno.stats.asleepMs).toBe(0);
    expect(board.since(0, 'sleeping')).toEqual([]);
    // Released: it may sleep now.
    const pong = board.ping(21, 0);
    expect(pong.sleepPending).toBe(true);
    board.next('sleeping', 1000);
  });
});

describe('firmware beats (BEATS/BEAT: the device sends its own heartbeat)', () => {
  /** BEATS and wait for its PONG. */
  function beats(board: FirmwareHarness, seq: number, intervalMs: number, forMs: number, leaseMs = 0) {
    board.send({ type: 'beats', seq, leaseMs, intervalMs, forMs });
    return board.next('pong', 500, (m) => m.seq === seq);
  }
  type Beat = { type: 'beat'; seq: number; uptimeMs: number; bootId: number };
  const beatsSince = (board: FirmwareHarness, mark: number) => board.since(mark, 'beat') as Beat[];
  const gaps = (list: Beat[]) => list.slice(1).map((b, i) => b.uptimeMs - list[i]!.uptimeMs);

  it('advertises beats, answers BEATS with a PONG, then BEATs about every interval until for_ms, carrying the seq and boot id', () => {
    const { board, hello } = bootedBoard();
    expect(hello.capabilities.beats).toBe(true);
    const mark = board.mark();
    const pong = beats(board, 321, 200, 1000);
    expect(pong).toMatchObject({ seq: 321, bootId: hello.bootId, leaseActive: false });
    // The first BEAT an interval after the BEATS.
    const first = board.next('beat', 300);
    expect(first.uptimeMs - pong.uptimeMs).toBeGreaterThanOrEqual(200);
    expect(first.uptimeMs - pong.uptimeMs).toBeLessThan(215);
    board.uno.advance(1100 - (first.uptimeMs - pong.uptimeMs));
    const list = beatsSince(board, mark);
    expect(list.length).toBeGreaterThanOrEqual(4);
    expect(list.length).toBeLessThanOrEqual(5);
    for (const b of list) expect(b).toMatchObject({ type: 'beat', seq: 321, bootId: hello.bootId, leaseActive: false, hostWasLost: false });
    for (const gap of gaps(list)) {
      expect(gap).toBeGreaterThanOrEqual(195);
      expect(gap).toBeLessThanOrEqual(205);
    }
    expect(list.at(-1)!.uptimeMs - pong.uptimeMs).toBeLessThanOrEqual(1000);
    // Past for_ms: no more.
    const after = board.mark();
    board.uno.advance(700);
    expect(board.since(after, 'beat')).toEqual([]);
  });

  it('a BEAT carries the lease left, like a PONG', () => {
    const { board } = bootedBoard();
    const pong = beats(board, 5, 200, 500, 3000);
    expect(pong).toMatchObject({ leaseActive: true, leaseRemainingMs: 3000 });
    const beat = board.next('beat', 300);
    expect(beat.leaseActive).toBe(true);
    const elapsed = beat.uptimeMs - pong.uptimeMs;
    expect(beat.leaseRemainingMs).toBe(3000 - elapsed);
  });

  it('refuses an interval of 1-99 with ERROR out-of-range: no PONG, no beats', () => {
    const { board } = bootedBoard();
    const mark = board.mark();
    board.sendRaw(frameWithPayload(0x07, [...u14(9), ...u32(0), ...u14(50), ...u32(1000)]));
    expect(board.next('error', 200)).toMatchObject({ code: 'out-of-range', offendingType: 0x07 });
    board.uno.advance(500);
    expect(board.since(mark).map((m) => m.type)).toEqual(['error']);
    // A PING after it is answered as usual, and still no beats start.
    board.ping(10);
    board.uno.advance(300);
    expect(board.since(mark, 'beat')).toEqual([]);
  });

  it('a refused BEATS leaves running beats as they were', () => {
    const { board } = bootedBoard();
    beats(board, 1, 200, 5000);
    board.next('beat', 300);
    board.sendRaw(frameWithPayload(0x07, [...u14(2), ...u32(0), ...u14(99), ...u32(1000)]));
    board.next('error', 200);
    const mark = board.mark();
    board.uno.advance(450);
    expect(beatsSince(board, mark).map((b) => b.seq)).toEqual([1, 1]);
  });

  it('a later BEATS replaces the schedule; interval 0 stops the beats', () => {
    const { board } = bootedBoard();
    beats(board, 1, 200, 5000);
    board.next('beat', 300);
    const pong = beats(board, 2, 300, 5000);
    const mark = board.mark();
    board.uno.advance(950);
    const list = beatsSince(board, mark);
    expect(list.map((b) => b.seq)).toEqual([2, 2, 2]);
    expect(list[0]!.uptimeMs - pong.uptimeMs).toBeGreaterThanOrEqual(300);
    for (const gap of gaps(list)) expect(Math.abs(gap - 300)).toBeLessThanOrEqual(5);

    beats(board, 3, 0, 5000);
    const stopped = board.mark();
    board.uno.advance(700);
    expect(board.since(stopped, 'beat')).toEqual([]);
    // for_ms 0 stops them too.
    beats(board, 4, 200, 5000);
    board.next('beat', 300);
    beats(board, 5, 200, 0);
    const stoppedAgain = board.mark();
    board.uno.advance(500);
    expect(board.since(stoppedAgain, 'beat')).toEqual([]);
  });

  it('a plain PING does not stop the beats (nor change their seq)', () => {
    const { board } = bootedBoard();
    beats(board, 40, 200, 3000);
    board.next('beat', 300);
    expect(board.ping(41).seq).toBe(41);
    const mark = board.mark();
    board.uno.advance(650);
    expect(beatsSince(board, mark).map((b) => b.seq)).toEqual([40, 40, 40]);
  });

  it('beats stop at a reset', () => {
    const { board } = bootedBoard();
    beats(board, 7, 200, 5000);
    board.next('beat', 300);
    board.uno.reset();
    board.next('hello', 1000);
    const mark = board.mark();
    board.uno.advance(700);
    expect(board.since(mark, 'beat')).toEqual([]);
  });

  it('beats stop when the host is lost (host_timeout_ms)', () => {
    const { board } = bootedBoard();
    board.send({ type: 'config-set', config: { watchdogMs: 2000, policy: 'stay', hostTimeoutMs: 500, sleepMs: 8000, awakeMs: 1000 } });
    board.next('config', 200);
    const mark = board.mark();
    const pong = beats(board, 8, 100, 5000);
    board.uno.advance(1200);
    const list = beatsSince(board, mark);
    expect(list.length).toBeGreaterThanOrEqual(4);
    expect(list.length).toBeLessThanOrEqual(5);
    expect(list.at(-1)!.uptimeMs - pong.uptimeMs).toBeLessThanOrEqual(500);
    // The next PING reports the loss.
    expect(board.ping(9).hostWasLost).toBe(true);
  });

  it('BEATS do not keep the device awake (like PINGs), and beats stop when it goes to sleep', () => {
    const { board } = bootedBoard();
    board.send({ type: 'config-set', config: { watchdogMs: 2000, policy: 'sleep', hostTimeoutMs: 0, sleepMs: 0, awakeMs: 500 } });
    board.next('config', 200);
    const mark = board.mark();
    let asleep = false;
    for (let seq = 1; seq <= 10 && !asleep; seq++) {
      board.send({ type: 'beats', seq, leaseMs: 0, intervalMs: 100, forMs: 10_000 });
      board.uno.advance(150);
      asleep = board.uno.runMode === 'sleeping';
    }
    expect(asleep).toBe(true);
    expect(beatsSince(board, mark).length).toBeGreaterThanOrEqual(1);
    board.next('sleeping', 0);
    board.sendRaw([0x00]);
    board.next('awake', 300);
    const afterWake = board.mark();
    board.uno.advance(400); // awake, under awake_ms: no beats until the host asks again
    expect(board.since(afterWake, 'beat')).toEqual([]);
  });
});

describe('firmware under garbage input', () => {
  // A fixed-seed generator: the garbage is random but the test is repeatable.
  function lcg(seed: number) {
    let s = seed >>> 0;
    return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24;
  }

  it('survives random bytes, truncated and oversize sysex, bad frames, with state intact', () => {
    const { board } = bootedBoard();
    board.send({ type: 'state-write', offset: 0, data: Uint8Array.from([0x11, 0x22, 0x33]) });
    board.next('state-data', 200);
    board.sendRaw([...firmata.setPinMode(13, firmata.MODE.OUTPUT), ...firmata.setDigitalPin(13, 1)]);
    board.runUntil(() => board.uno.digitalOutput(13) === true, 100);
    const errorsBefore = board.since(0, 'error').length;

    const next = lcg(42);
    for (let round = 0; round < 20; round++) {
      // Random bytes, but never 0xFF (SYSTEM_RESET is a legitimate command) nor pin-changing commands.
      const noise = Array.from({ length: 40 }, () => next()).filter((b) => b !== 0xff && (b < 0x90 || b > 0x9f) && b !== 0xf4 && b !== 0xf5 && (b < 0xe0 || b > 0xef));
      board.sendRaw(noise);
      board.uno.advance(20);
    }
    const ping = encodeFrame({ type: 'ping', seq: 7, leaseMs: 0 });
    board.sendRaw(ping.slice(0, 6)); // truncated: cut by the next command byte
    board.sendRaw([0xf0, 0x0d, ...Array.from({ length: 200 }, (_, i) => i & 0x7f), 0xf7]); // oversize
    const badCrc = Uint8Array.from(ping);
    badCrc[badCrc.length - 3] ^= 0x01;
    board.sendRaw(badCrc);
    board.sendRaw([0xf0, 0x0d, 0x02, 0x3f, 0x00, 0x00, 0xf7]); // wrong version
    board.uno.advance(200);

    const pong = board.ping(100, 0);
    expect(pong.seq).toBe(100);
    expect(board.since(0, 'error').length).toBeGreaterThan(errorsBefore);
    expect(board.uno.stats.resets.watchdog).toBe(0);
    expect(board.uno.digitalOutput(13)).toBe(true);
    expect([...board.readState(0, 3)]).toEqual([0x11, 0x22, 0x33]);
  });

  it('answers each kind of bad frame with a typed ERROR', () => {
    const { board } = bootedBoard();
    const good = encodeFrame({ type: 'state-read', offset: 0, length: 1 });
    const badCrc = Uint8Array.from(good);
    badCrc[badCrc.length - 3] ^= 0x04;
    board.sendRaw(badCrc);
    expect(board.next('error', 200).code).toBe('bad-crc');
    // STATE_READ past the 32 registers: length 16 at offset 30.
    board.sendRaw(frameWithPayload(0x03, [30, 16]));
    expect(board.next('error', 200)).toMatchObject({ code: 'out-of-range', offendingType: 0x03 });
    board.sendRaw(frameWithPayload(0x3e, []));
    expect(board.next('error', 200)).toMatchObject({ code: 'unknown-type' });
    board.sendRaw(frameWithPayload(0x02, [1, 2])); // PING too short
    expect(board.next('error', 200)).toMatchObject({ code: 'bad-length', offendingType: 0x02 });
  });
});

/** Septets of a u14 and a u32 field, for frames the codec would refuse to encode. */
function u14(v: number): number[] {
  return [v & 0x7f, (v >> 7) & 0x7f];
}
function u32(v: number): number[] {
  return [0, 7, 14, 21, 28].map((shift) => (v >>> shift) & 0x7f);
}

function crc8(bytes: number[]): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

/** A well-formed frame with any type and payload, to reach the firmware's own checks. */
function frameWithPayload(type: number, payload: number[]): number[] {
  const covered = [0x01, type, ...payload];
  const crc = crc8(covered);
  return [0xf0, 0x0d, ...covered, crc & 0x7f, crc >> 7, 0xf7];
}
