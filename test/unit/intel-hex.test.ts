import { describe, expect, it } from 'vitest';
import { IntelHexError, loadIntelHex } from '../../host/flash/intel-hex.ts';

describe('loadIntelHex', () => {
  it('writes data records at their addresses, with extended segment addressing', () => {
    const flash = new Uint8Array(0x20000).fill(0xff);
    const end = loadIntelHex(':0400100001020304E2\n:020000021000EC\n:02000000AABB99\n:00000001FF\n', flash);
    expect([...flash.subarray(0x10, 0x14)]).toEqual([1, 2, 3, 4]);
    expect([...flash.subarray(0x10000, 0x10002)]).toEqual([0xaa, 0xbb]);
    expect(end).toBe(0x10002);
  });

  it.each([
    [':0400100001020304E3', 'checksum mismatch'],
    [':04001000010203E2', 'length does not match'],
    ['0400100001020304E2', 'not a record'],
    [':0400100001020Z04E2', 'bad hex digit'],
    [':00000007F9', 'unknown record type'],
  ])('rejects %s with a line number (%s)', (line, why) => {
    expect(() => loadIntelHex(line, new Uint8Array(64))).toThrow(IntelHexError);
    expect(() => loadIntelHex(line, new Uint8Array(64))).toThrow(new RegExp(`line 1: ${why}`));
  });

  it('rejects data beyond the flash', () => {
    expect(() => loadIntelHex(':0400100001020304E2', new Uint8Array(0x12))).toThrow(/beyond flash/);
  });
});
