// Benchmark 4a: device -> host telemetry with the serial wire as the limit. The emulated Uno
// (real firmware at 115200 baud) reports all six analog channels every millisecond, more than
// the wire carries; measure what reaches the host (bytes/s and ANALOG_MESSAGEs/s) against the
// wire's capacity, baud/10 bytes per second.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BoardOnPty } from '../emulator/avr/board-on-pty.ts';
import { DeviceLink } from '../host/link/device-link.ts';
import { firmwareAtBaud, printTable, sleep, withDeadline, type Row } from './support.ts';

const BAUD = 115200;
const MEASURE_MS = 5000;

export async function serialThroughput(): Promise<Row[]> {
  const ptyPath = join(mkdtempSync(join(tmpdir(), 'tether-tput-')), 'uno');
  const board = await BoardOnPty.start({ hexPath: firmwareAtBaud(BAUD), ptyPath });
  for (let ch = 0; ch < 6; ch++) board.uno.setAnalogInput(ch, 1 + ch * 0.5);
  const link = new DeviceLink({ target: ptyPath, baudRate: BAUD, session: { pingIntervalMs: 1000 } });
  let bytes = 0;
  let analogMessages = 0;
  link.on('firmata', (b) => {
    bytes += b.length;
    for (const x of b) if ((x & 0xf0) === 0xe0) analogMessages++;
  });
  link.start();
  await link.ready(15_000);
  // Sampling interval 1 ms, all six analog channels reporting.
  link.writeFirmata([0xf0, 0x7a, 1, 0, 0xf7, 0xc0, 1, 0xc1, 1, 0xc2, 1, 0xc3, 1, 0xc4, 1, 0xc5, 1]);
  await sleep(1000);
  bytes = 0;
  analogMessages = 0;
  const t0 = performance.now();
  await sleep(MEASURE_MS);
  const seconds = (performance.now() - t0) / 1000;
  await withDeadline(link.close(), 10_000, 'the DeviceLink to close');
  await withDeadline(board.close(), 10_000, 'the emulated board to close');
  const capacity = BAUD / 10;
  const rate = bytes / seconds;
  return [
    {
      benchmark: `serial telemetry @ ${BAUD} baud, 6 analog channels every 1 ms (bytes/s; analog msg/s)`,
      measured: `${rate.toFixed(0)} B/s; ${(analogMessages / seconds).toFixed(0)} msg/s`,
      limit: `${capacity} B/s wire capacity (baud/10)`,
      ratio: `${((rate / capacity) * 100).toFixed(0)}% of the wire`,
    },
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) printTable('Serial telemetry throughput', await serialThroughput());
