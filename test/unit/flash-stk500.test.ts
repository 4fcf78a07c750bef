import { beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { BOARDS, describeSignature } from '../../host/flash/boards.ts';
import type { ByteLink } from '../../host/flash/byte-link.ts';
import { FlashError, type FlashErrorCode } from '../../host/flash/errors.ts';
import { parseFirmwareImage, readFirmwareImage, type FirmwareImage } from '../../host/flash/firmware-image.ts';
import { pagesOf, programFirmware, type FlashProgress } from '../../host/flash/program-firmware.ts';
import * as stk from '../../host/flash/stk500v1.ts';

const uno = BOARDS.uno!;

/** The fake time of the programmer and the scripted board, new for each test. */
let clock: ManualClock;

/**
 * A scripted Optiboot on the other end of a ByteLink: it answers each command (one write =
 * one command, as the programmer sends them) from a flash array, with knobs for failures.
 * Answers arrive on a later microtask, like bytes from a port.
 */
class FakeOptiboot implements ByteLink {
  readonly writes: number[][] = [];
  readonly flash = new Uint8Array(32 * 1024).fill(0xff);
  signature = [0x1e, 0x95, 0x0f];
  /** GET_SYNCs to ignore first (lost while the board resets). */
  ignoreSyncs = 0;
  /** Bytes the "application" prints before each GET_SYNC answer. */
  noiseBeforeSync: number[] = [];
  /** No bootloader: an application answers every write with these bytes of its own. */
  applicationOnly: number[] | null = null;
  /** Never answer anything (no bootloader there). */
  silent = false;
  /** Answer nothing (or only this prefix) to the n-th command of this byte (1-based). */
  stall: { command: number; nth: number; prefix?: number[] } | null = null;
  /** Flash cell that reads back with bit 0 stuck at 0. */
  stuckAt: number | null = null;
  /** Answer NOSYNC to this command byte. */
  nosyncTo: number | null = null;
  /** The first this-many GET_SYNC answers take this long (a slow board or a busy host). */
  slowSyncs = { count: 0, delayMs: 0 };
  /** Answers leave in order, like bytes on a serial line: none before the one in front. */
  private nextFreeAt = 0;
  private address = 0;
  private readonly seen = new Map<number, number>();
  private listeners = new Set<(bytes: Uint8Array) => void>();

  onData(listener: (bytes: Uint8Array) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async write(bytes: Uint8Array): Promise<void> {
    const cmd = [...bytes];
    this.writes.push(cmd);
    const op = cmd[0]!;
    const nth = (this.seen.get(op) ?? 0) + 1;
    this.seen.set(op, nth);
    if (this.silent) return;
    if (this.applicationOnly) return this.send(this.applicationOnly);
    if (op === stk.STK.GET_SYNC && this.ignoreSyncs > 0) {
      this.ignoreSyncs--;
      return;
    }
    if (this.stall && this.stall.command === op && this.stall.nth === nth) {
      if (this.stall.prefix) this.send(this.stall.prefix);
      return;
    }
    if (op === this.nosyncTo) return this.send([stk.STK.NOSYNC]);
    expect(cmd.at(-1)).toBe(stk.STK.CRC_EOP);
    let payload: number[] = [];
    switch (op) {
      case stk.STK.GET_SYNC:
        this.send([...this.noiseBeforeSync]);
        if (this.slowSyncs.count > 0) {
          this.slowSyncs.count--;
          return this.send([stk.STK.INSYNC, stk.STK.OK], this.slowSyncs.delayMs);
        }
        break;
      case stk.STK.READ_SIGN:
        payload = this.signature;
        break;
      case stk.STK.LOAD_ADDRESS:
        this.address = (cmd[1]! | (cmd[2]! << 8)) * 2;
        break;
      case stk.STK.PROG_PAGE: {
        const length = (cmd[1]! << 8) | cmd[2]!;
        expect(cmd[3]).toBe(0x46);
        this.flash.set(cmd.slice(4, 4 + length), this.address);
        if (this.stuckAt !== null) this.flash[this.stuckAt]! &= 0xfe;
        break;
      }
      case stk.STK.READ_PAGE: {
        const length = (cmd[1]! << 8) | cmd[2]!;
        payload = [...this.flash.subarray(this.address, this.address + length)];
        break;
      }
    }
    this.send([stk.STK.INSYNC, ...payload, stk.STK.OK]);
  }

  private send(bytes: number[], delayMs = 0): void {
    if (bytes.length === 0) return;
    const now = clock.now();
    const at = Math.max(now + delayMs, this.nextFreeAt);
    this.nextFreeAt = at;
    const deliver = () => {
      for (const l of this.listeners) l(Uint8Array.from(bytes));
    };
    if (at <= now) queueMicrotask(deliver);
    else clock.setTimeout(deliver, at - now);
  }
}

function imageOf(bytes: number[]): FirmwareImage {
  return { bytes: Uint8Array.from(bytes), source: 'test image' };
}

/** Runs a flash to completion in fake time; resolves with its result or FlashError. */
async function settle<T>(promise: Promise<T>, ms = 60_000): Promise<T | FlashError> {
  const outcome = promise.then(
    (v) => v,
    (e: unknown) => e as FlashError,
  );
  await clock.advanceAsync(ms);
  return await outcome;
}

function expectFlashError(result: unknown, code: FlashErrorCode, message?: RegExp): FlashError {
  expect(result).toBeInstanceOf(FlashError);
  const err = result as FlashError;
  expect(err.code).toBe(code);
  if (message) expect(err.message).toMatch(message);
  expect(err.message).not.toContain('\n');
  return err;
}

describe('STK500v1 codec', () => {
  it('encodes commands byte for byte', () => {
    expect([...stk.getSync().bytes]).toEqual([0x30, 0x20]);
    expect([...stk.enterProgMode().bytes]).toEqual([0x50, 0x20]);
    expect([...stk.leaveProgMode().bytes]).toEqual([0x51, 0x20]);
    expect([...stk.readSignature().bytes]).toEqual([0x75, 0x20]);
    // Word address, little-endian: byte 0x7D80 is word 0x3EC0.
    expect([...stk.loadAddress(0x7d80).bytes]).toEqual([0x55, 0xc0, 0x3e, 0x20]);
    expect([...stk.progPage(Uint8Array.from([1, 2, 3, 4])).bytes]).toEqual([0x64, 0x00, 0x04, 0x46, 1, 2, 3, 4, 0x20]);
    expect([...stk.readPage(128).bytes]).toEqual([0x74, 0x00, 0x80, 0x46, 0x20]);
  });

  it('rejects addresses and lengths it cannot encode', () => {
    expect(() => stk.loadAddress(1)).toThrow(RangeError);
    expect(() => stk.loadAddress(0x20000)).toThrow(RangeError);
    expect(() => stk.progPage(new Uint8Array(0))).toThrow(RangeError);
    expect(() => stk.readPage(257)).toThrow(RangeError);
  });

  it('parses answers as they arrive', () => {
    const sign = stk.readSignature();
    expect(stk.parseAnswer(sign, Uint8Array.from([]))).toEqual({ status: 'incomplete' });
    expect(stk.parseAnswer(sign, Uint8Array.from([0x14, 0x1e, 0x95]))).toEqual({ status: 'incomplete' });
    expect(stk.parseAnswer(sign, Uint8Array.from([0x14, 0x1e, 0x95, 0x0f]))).toEqual({ status: 'incomplete' });
    expect(stk.parseAnswer(sign, Uint8Array.from([0x14, 0x1e, 0x95, 0x0f, 0x10]))).toEqual({
      status: 'ok',
      payload: Uint8Array.from([0x1e, 0x95, 0x0f]),
    });
    expect(stk.parseAnswer(sign, Uint8Array.from([0x15]))).toEqual({ status: 'nosync' });
    expect(stk.parseAnswer(sign, Uint8Array.from([0x14, 1, 2, 3, 0x11]))).toEqual({ status: 'failed' });
    expect(stk.parseAnswer(sign, Uint8Array.from([0x42]))).toMatchObject({ status: 'invalid', reason: expect.stringMatching(/INSYNC/) });
    expect(stk.parseAnswer(sign, Uint8Array.from([0x14, 1, 2, 3, 0x99]))).toMatchObject({ status: 'invalid' });
  });

  it('skips late GET_SYNC answers in front of an answer', () => {
    expect([...stk.skipSyncAnswers(Uint8Array.from([0x14, 0x10, 0x14, 0x10, 0x14, 0x1e]))]).toEqual([0x14, 0x1e]);
    expect([...stk.skipSyncAnswers(Uint8Array.from([0x14]))]).toEqual([0x14]);
  });

  it('finds a sync answer after noise', () => {
    expect(stk.findSyncAnswer(Uint8Array.from([0xf0, 0x0d, 0x14, 0x10]))).toBe(2);
    expect(stk.findSyncAnswer(Uint8Array.from([0x14]))).toBe(-1);
  });

  it('names signatures', () => {
    expect(describeSignature([0x1e, 0x95, 0x0f])).toBe('1E 95 0F (ATmega328P)');
    expect(describeSignature([0x00, 0x00, 0x00])).toBe('00 00 00');
  });
});

describe('programFirmware against a scripted Optiboot', () => {
  beforeEach(() => {
    clock = new ManualClock();
  });

  it('sends the expected bytes: sync, signature, progmode, pages, read-back, leave', async () => {
    const board = new FakeOptiboot();
    const bytes = Array.from({ length: 200 }, (_, i) => i & 0xff);
    const progress: FlashProgress[] = [];
    const result = await settle(programFirmware(board, imageOf(bytes), { clock, board: uno, onProgress: (p) => progress.push(p) }));
    // The board answers at once: the only time spent is the 50 ms wait for late sync answers.
    expect(result).toMatchObject({ bytes: 200, pages: 2, verified: true, durationMs: 50 });

    const page1 = [...bytes.slice(128), ...new Array(56).fill(0xff)];
    expect(board.writes).toEqual([
      [0x30, 0x20],
      [0x75, 0x20],
      [0x50, 0x20],
      [0x55, 0x00, 0x00, 0x20],
      [0x64, 0x00, 0x80, 0x46, ...bytes.slice(0, 128), 0x20],
      [0x55, 0x40, 0x00, 0x20],
      [0x64, 0x00, 0x80, 0x46, ...page1, 0x20],
      [0x55, 0x00, 0x00, 0x20],
      [0x74, 0x00, 0x80, 0x46, 0x20],
      [0x55, 0x40, 0x00, 0x20],
      [0x74, 0x00, 0x80, 0x46, 0x20],
      [0x51, 0x20],
    ]);
    expect([...board.flash.subarray(0, 256)]).toEqual([...bytes.slice(0, 128), ...page1]);
    expect(progress).toEqual([
      { phase: 'writing', done: 0, total: 200 },
      { phase: 'writing', done: 128, total: 200 },
      { phase: 'writing', done: 200, total: 200 },
      { phase: 'verifying', done: 0, total: 200 },
      { phase: 'verifying', done: 128, total: 200 },
      { phase: 'verifying', done: 200, total: 200 },
    ]);
  });

  it('skips the read-back with verify: false', async () => {
    const board = new FakeOptiboot();
    const result = await settle(programFirmware(board, imageOf([1, 2]), { clock, board: uno, verify: false }));
    expect(result).toMatchObject({ verified: false, pages: 1 });
    expect(board.writes.some((w) => w[0] === stk.STK.READ_PAGE)).toBe(false);
  });

  it('retries GET_SYNC while the board resets, and skips what the application printed', async () => {
    const board = new FakeOptiboot();
    board.ignoreSyncs = 3;
    board.noiseBeforeSync = [0xf0, 0x0d, 0x01, 0xf7];
    const result = await settle(programFirmware(board, imageOf([1, 2, 3, 4]), { clock, board: uno }));
    expect(result).toMatchObject({ verified: true });
    expect(board.writes.filter((w) => w[0] === stk.STK.GET_SYNC)).toHaveLength(4);
  });

  it('copes with GET_SYNC answers that come after their attempt timed out', async () => {
    const board = new FakeOptiboot();
    // Attempts at 0, 200, 400 ms are answered at 450, 700, 950 ms: the programmer syncs on
    // the first (late) answer and two more INSYNC OK pairs are still on their way.
    board.slowSyncs = { count: 3, delayMs: 450 };
    const bytes = Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
    const result = await settle(programFirmware(board, imageOf(bytes), { clock, board: uno }));
    expect(result).toMatchObject({ bytes: 300, verified: true });
    expect(board.writes.filter((w) => w[0] === stk.STK.GET_SYNC)).toHaveLength(3);
    expect([...board.flash.subarray(0, 300)]).toEqual(bytes);
  });

  it("gives up with 'no-sync' after the configured attempts, no sooner", async () => {
    const board = new FakeOptiboot();
    board.silent = true;
    let outcome: unknown = 'pending';
    programFirmware(board, imageOf([1, 2]), { clock, board: uno, syncAttempts: 5, syncTimeoutMs: 300 }).then(
      (v) => (outcome = v),
      (e: unknown) => (outcome = e),
    );
    await clock.advanceAsync(5 * 300 - 1);
    expect(outcome).toBe('pending');
    expect(board.writes).toHaveLength(5);
    await clock.advanceAsync(1);
    expectFlashError(outcome, 'no-sync', /5 GET_SYNC attempts/);
    expect(board.writes).toHaveLength(5);
  });

  it('says when the port talks but not STK500 (an application, wrong baud)', async () => {
    const board = new FakeOptiboot();
    board.applicationOnly = [0xf0, 0x0d, 0xf7];
    const result = await settle(programFirmware(board, imageOf([1, 2]), { clock, board: uno }));
    expectFlashError(result, 'no-sync', /10 GET_SYNC attempts .*sent 30 other byte\(s\), so something else is running there/);
  });

  it("refuses a chip that is not an ATmega328P with 'wrong-signature', before writing", async () => {
    const board = new FakeOptiboot();
    board.signature = [0x1e, 0x95, 0x14];
    const result = await settle(programFirmware(board, imageOf([1, 2]), { clock, board: uno }));
    expectFlashError(result, 'wrong-signature', /1E 95 14 \(ATmega328\).*1E 95 0F \(ATmega328P\)/);
    expect(board.writes.some((w) => w[0] === stk.STK.PROG_PAGE)).toBe(false);
    expect(board.writes.at(-1)).toEqual([0x51, 0x20]); // LEAVE_PROGMODE: the old application starts again
  });

  it("reports 'verify-failed' with the first address that reads back wrong", async () => {
    const board = new FakeOptiboot();
    board.stuckAt = 0x85;
    const bytes = new Array(256).fill(0x55);
    const result = await settle(programFirmware(board, imageOf(bytes), { clock, board: uno }));
    expectFlashError(result, 'verify-failed', /verify failed at 0x0085: wrote 0x55, read back 0x54/);
    expect(board.writes.at(-2)![0]).toBe(stk.STK.READ_PAGE);
    expect(board.writes.at(-1)).toEqual([0x51, 0x20]);
  });

  it("times out a command that gets no answer, after commandTimeoutMs", async () => {
    const board = new FakeOptiboot();
    board.stall = { command: stk.STK.PROG_PAGE, nth: 2 };
    let outcome: unknown = 'pending';
    programFirmware(board, imageOf(new Array(300).fill(1)), { clock, board: uno, commandTimeoutMs: 700 }).then(
      (v) => (outcome = v),
      (e: unknown) => (outcome = e),
    );
    await clock.advanceAsync(50 + 699); // sync settle + almost the timeout
    expect(outcome).toBe('pending');
    await clock.advanceAsync(1);
    expectFlashError(outcome, 'timeout', /no answer to PROG_PAGE 0x0080 within 700 ms/);
  });

  it('says how much of a cut-off answer arrived', async () => {
    const board = new FakeOptiboot();
    board.stall = { command: stk.STK.READ_SIGN, nth: 1, prefix: [0x14, 0x1e] };
    const result = await settle(programFirmware(board, imageOf([1, 2]), { clock, board: uno }));
    expectFlashError(result, 'timeout', /READ_SIGN .*got 2 of 5 bytes: 14 1e/);
  });

  it("turns a NOSYNC answer into a 'protocol' error", async () => {
    const board = new FakeOptiboot();
    board.nosyncTo = stk.STK.ENTER_PROGMODE;
    const result = await settle(programFirmware(board, imageOf([1, 2]), { clock, board: uno }));
    expectFlashError(result, 'protocol', /lost sync at ENTER_PROGMODE/);
  });

  it("turns a failing write into a 'port-error'", async () => {
    const board = new FakeOptiboot();
    const broken: ByteLink = { onData: (l) => board.onData(l), write: () => Promise.reject(new Error('EIO')) };
    const result = await settle(programFirmware(broken, imageOf([1, 2]), { clock, board: uno }));
    expectFlashError(result, 'port-error', /cannot send GET_SYNC: EIO/);
  });
});

describe('firmware images', () => {
  const record = (address: number, data: number[]) => {
    const bytes = [data.length, address >> 8, address & 0xff, 0, ...data];
    const sum = (0x100 - (bytes.reduce((a, b) => a + b, 0) & 0xff)) & 0xff;
    return `:${[...bytes, sum].map((b) => b.toString(16).padStart(2, '0')).join('').toUpperCase()}`;
  };

  it('reads a hex into bytes from address 0, gaps erased, padded to a word', () => {
    const image = parseFirmwareImage([record(4, [1, 2, 3]), ':00000001FF'].join('\n'), uno);
    expect([...image.bytes]).toEqual([0xff, 0xff, 0xff, 0xff, 1, 2, 3, 0xff]);
    expect(pagesOf(image.bytes, 128)).toHaveLength(1);
  });

  it("rejects bad, empty and oversized images as 'bad-hex'", () => {
    const bad = (text: string) => {
      try {
        parseFirmwareImage(text, uno, 'x.hex');
      } catch (err) {
        return err;
      }
      return null;
    };
    expectFlashError(bad(':10000000ZZ'), 'bad-hex', /x\.hex is not a valid Intel HEX file/);
    expectFlashError(bad(':00000001FF'), 'bad-hex', /contains no data/);
    expectFlashError(bad([record(0x7e00, [1]), ':00000001FF'].join('\n')), 'bad-hex', /32257 bytes .* room for 32256/);
  });

  it("reports a missing file as 'not-found'", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-flash-unit-'));
    const err = await readFirmwareImage(join(dir, 'missing.hex'), uno).catch((e: unknown) => e);
    expectFlashError(err, 'not-found', /firmware file not found: .*missing\.hex/);
    writeFileSync(join(dir, 'ok.hex'), [record(0, [9, 9]), ':00000001FF'].join('\n'));
    expect([...(await readFirmwareImage(join(dir, 'ok.hex'), uno)).bytes]).toEqual([9, 9]);
  });
});
