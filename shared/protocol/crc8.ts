/**
 * CRC-8/SMBUS: polynomial 0x07, init 0x00, no reflection, no final xor.
 * Check value: crc8("123456789") === 0xF4.
 */

const TABLE: Uint8Array = (() => {
  const table = new Uint8Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
    }
    table[i] = crc;
  }
  return table;
})();

/** CRC-8/SMBUS of `bytes[start..end)`, continuing from `crc` (default: the init value 0). */
export function crc8(bytes: ArrayLike<number>, start = 0, end = bytes.length, crc = 0): number {
  let c = crc & 0xff;
  for (let i = start; i < end; i++) {
    c = TABLE[(c ^ bytes[i]!) & 0xff]!;
  }
  return c;
}
