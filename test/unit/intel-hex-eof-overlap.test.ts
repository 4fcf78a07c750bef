import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { IntelHexError, loadIntelHex } from '../../host/flash/intel-hex.ts';
import { parseFirmwareImage } from '../../host/flash/firmware-image.ts';
import { BOARDS } from '../../host/flash/boards.ts';
import { FlashError } from '../../host/flash/errors.ts';

const HEX = readFileSync(fileURLToPath(new URL('../../firmware/avr/tether.hex', import.meta.url)), 'utf8');

/** The shipped image cut after the last whole line that ends within `bytes` bytes. */
function cutAtLineBoundary(text: string, bytes: number): string {
  const cut = text.lastIndexOf('\n', bytes - 1) + 1;
  return text.slice(0, cut);
}

describe('Intel HEX: end-of-file record (review point 14)', () => {
  it('rejects the shipped image cut at a line boundary (1,600 of its bytes), naming the last line', () => {
    const cut = cutAtLineBoundary(HEX, 1600);
    expect(cut.length).toBeLessThanOrEqual(1600);
    expect(cut.endsWith('\n')).toBe(true);
    const lines = cut.split('\n').length - 1;
    expect(() => loadIntelHex(cut, new Uint8Array(32 * 1024))).toThrow(IntelHexError);
    expect(() => loadIntelHex(cut, new Uint8Array(32 * 1024))).toThrow(new RegExp(`^Intel HEX line ${lines}: no end-of-file record`));
    // And through the flash path: a FlashError('bad-hex'), never a half image.
    let err: unknown;
    try {
      parseFirmwareImage(cut, BOARDS.uno, 'cut.hex');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FlashError);
    expect((err as FlashError).message).toMatch(/cut\.hex is not a valid Intel HEX file: Intel HEX line \d+: no end-of-file record/);
  });

  it('still accepts the whole shipped image, and lines after the EOF record are ignored', () => {
    const flash = new Uint8Array(32 * 1024).fill(0xff);
    const end = loadIntelHex(HEX, flash);
    expect(end).toBeGreaterThan(7000);
    expect(loadIntelHex(HEX + 'trailing words\n', new Uint8Array(32 * 1024))).toBe(end);
  });

  it('rejects an empty file and an EOF record with data', () => {
    expect(() => loadIntelHex('', new Uint8Array(64))).toThrow(/line 1: empty file: no end-of-file record/);
    expect(() => loadIntelHex(':02000000AABB99\n:01000001AA54\n', new Uint8Array(64))).toThrow(/line 2: end-of-file record with data/);
  });
});

describe('Intel HEX: overlapping records (review point 14)', () => {
  it('rejects a data record that rewrites bytes of an earlier one, naming both lines', () => {
    // line 1 writes 0x10..0x13, line 2 writes 0x12..0x13 again
    const text = ':0400100001020304E2\n:02001200AABB87\n:00000001FF\n';
    expect(() => loadIntelHex(text, new Uint8Array(64))).toThrow(/^Intel HEX line 2: data at 0x12 overlaps the data of line 1$/);
  });

  it('sees an overlap through extended addressing too', () => {
    // 0x10000 via a segment base (0x1000 << 4), then the same byte via a linear base of 1 (0x10000)
    const text = ':020000021000EC\n:02000000AABB99\n:020000040001F9\n:01000000CC33\n:00000001FF\n';
    expect(() => loadIntelHex(text, new Uint8Array(0x20000))).toThrow(/line 4: data at 0x10000 overlaps the data of line 2/);
  });

  it('adjacent records are fine', () => {
    const flash = new Uint8Array(64);
    expect(loadIntelHex(':0400100001020304E2\n:02001400AABB85\n:00000001FF\n', flash)).toBe(0x16);
  });
});
