/** Errors from reading an Intel HEX image, with the line that was wrong. */
export class IntelHexError extends Error {
  constructor(message: string, readonly line: number) {
    super(`Intel HEX line ${line}: ${message}`);
    this.name = 'IntelHexError';
  }
}

/**
 * Writes the data records of an Intel HEX text into `target` (flash bytes).
 * Checks every record's checksum: a corrupt image must not half-load silently. Requires the
 * end-of-file record (a file cut at a line boundary is otherwise a valid-looking half image,
 * and a verify that reads back what was written would pass it), and rejects a data record that
 * overlaps bytes an earlier record wrote (naming both lines). Lines after the end-of-file record
 * are ignored. Returns the highest address written + 1.
 */
export function loadIntelHex(text: string, target: Uint8Array): number {
  let base = 0;
  let end = 0;
  // The line (1-based) that wrote each byte, 0 for none: finds overlapping records.
  const writtenBy = new Int32Array(target.length);
  const lines = text.split(/\r?\n/);
  let lastLine = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const lineNo = i + 1;
    lastLine = lineNo;
    if (!line.startsWith(':') || line.length < 11 || line.length % 2 === 0) {
      throw new IntelHexError('not a record', lineNo);
    }
    if (!/^:[0-9A-Fa-f]+$/.test(line)) throw new IntelHexError('bad hex digit', lineNo);
    const bytes = Uint8Array.from(Buffer.from(line.slice(1), 'hex'));
    const count = bytes[0]!;
    if (bytes.length !== count + 5) throw new IntelHexError('length does not match byte count', lineNo);
    let sum = 0;
    for (const b of bytes) sum = (sum + b) & 0xff;
    if (sum !== 0) throw new IntelHexError('checksum mismatch', lineNo);
    const address = (bytes[1]! << 8) | bytes[2]!;
    const type = bytes[3]!;
    const data = bytes.subarray(4, 4 + count);
    switch (type) {
      case 0x00: {
        const at = base + address;
        if (at + count > target.length) throw new IntelHexError(`data at 0x${at.toString(16)} beyond flash`, lineNo);
        for (let a = at; a < at + count; a++) {
          if (writtenBy[a] !== 0) {
            throw new IntelHexError(`data at 0x${a.toString(16)} overlaps the data of line ${writtenBy[a]}`, lineNo);
          }
          writtenBy[a] = lineNo;
        }
        target.set(data, at);
        end = Math.max(end, at + count);
        break;
      }
      case 0x01:
        if (count !== 0) throw new IntelHexError('end-of-file record with data', lineNo);
        return end;
      case 0x02:
        base = ((data[0]! << 8) | data[1]!) << 4;
        break;
      case 0x04:
        base = ((data[0]! << 8) | data[1]!) << 16;
        break;
      case 0x03:
      case 0x05:
        break; // start addresses mean nothing to an AVR
      default:
        throw new IntelHexError(`unknown record type ${type}`, lineNo);
    }
  }
  throw new IntelHexError(
    lastLine === 0
      ? 'empty file: no end-of-file record (:00000001FF)'
      : 'no end-of-file record (:00000001FF) after this last line: the file is cut short',
    Math.max(lastLine, 1),
  );
}
