import type { PinRecord } from './pin-record.ts';

/**
 * The Firmata commands that bring a board with default pins back to `record`:
 * modes first (so writes land on outputs), then values, then sampling and reporting.
 */
export function replayCommands(record: PinRecord): number[] {
  const out: number[] = [];
  for (const [pin, mode] of [...record.modes].sort((a, b) => a[0] - b[0])) out.push(0xf4, pin, mode);
  for (const [port, value] of [...record.digitalPorts].sort((a, b) => a[0] - b[0])) {
    out.push(0x90 | port, value & 0x7f, (value >> 7) & 0x7f);
  }
  for (const [pin, value] of [...record.analogWrites].sort((a, b) => a[0] - b[0])) {
    if (pin <= 15 && value <= 0x3fff) out.push(0xe0 | pin, value & 0x7f, (value >> 7) & 0x7f);
    else out.push(0xf0, 0x6f, pin, value & 0x7f, (value >> 7) & 0x7f, (value >> 14) & 0x7f, 0xf7);
  }
  if (record.samplingIntervalMs !== null) {
    out.push(0xf0, 0x7a, record.samplingIntervalMs & 0x7f, (record.samplingIntervalMs >> 7) & 0x7f, 0xf7);
  }
  for (const channel of [...record.analogReporting].sort((a, b) => a - b)) out.push(0xc0 | channel, 1);
  for (const port of [...record.digitalReporting].sort((a, b) => a - b)) out.push(0xd0 | port, 1);
  return out;
}

/** Register writes as contiguous runs of at most `chunk` bytes: [offset, bytes][]. */
export function registerRuns(registers: Map<number, number>, chunk = 16): Array<[number, Uint8Array]> {
  const offsets = [...registers.keys()].sort((a, b) => a - b);
  const runs: Array<[number, Uint8Array]> = [];
  let start = -1;
  let bytes: number[] = [];
  for (const offset of offsets) {
    if (start >= 0 && offset === start + bytes.length && bytes.length < chunk) {
      bytes.push(registers.get(offset)!);
      continue;
    }
    if (start >= 0) runs.push([start, Uint8Array.from(bytes)]);
    start = offset;
    bytes = [registers.get(offset)!];
  }
  if (start >= 0) runs.push([start, Uint8Array.from(bytes)]);
  return runs;
}
