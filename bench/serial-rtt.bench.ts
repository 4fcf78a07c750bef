// Benchmark 1: heartbeat RTT over a pty to the emulated Uno (real firmware), against the wire
// time of the PING and PONG frames at that baud (the physical floor).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BoardOnPty } from '../emulator/avr/board-on-pty.ts';
import { DeviceLink } from '../host/link/device-link.ts';
import { encodeFrame } from '../shared/protocol/index.ts';
import { waitFor } from '../test/support/wait-for.ts';
import { firmwareAtBaud, percentile, printTable, type Row } from './support.ts';

const SAMPLES = Number(process.env.TETHER_BENCH_RTT_SAMPLES ?? 300);

export async function serialRtt(): Promise<Row[]> {
  const ping = encodeFrame({ type: 'ping', seq: 1, leaseMs: 0 }).length;
  const pong = encodeFrame({ type: 'pong', seq: 1, uptimeMs: 1, bootId: 1, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 }).length;
  const rows: Row[] = [];
  for (const baud of [57600, 115200, 1_000_000]) {
    const hexPath = firmwareAtBaud(baud);
    const ptyPath = join(mkdtempSync(join(tmpdir(), 'tether-rtt-')), 'uno');
    const board = await BoardOnPty.start({ hexPath, ptyPath });
    const link = new DeviceLink({ target: ptyPath, baudRate: baud, session: { pingIntervalMs: 20, misses: 50 } });
    const rtts: number[] = [];
    link.on('rtt', (ms) => rtts.push(ms));
    link.start();
    await link.ready(15_000);
    rtts.length = 0; // warm-up done
    await waitFor(() => rtts.length >= SAMPLES, { what: `${SAMPLES} RTT samples at ${baud} baud`, timeoutMs: 120_000, intervalMs: 50, detail: () => `${rtts.length} so far` });
    await link.close();
    await board.close();
    const sorted = [...rtts].sort((a, b) => a - b);
    const wireMs = ((ping + pong) * 10 * 1000) / baud; // 8N1: 10 bits a byte
    const p50 = percentile(sorted, 50);
    const p99 = percentile(sorted, 99);
    rows.push({
      benchmark: `serial RTT @ ${baud} baud (p50 / p99, ${sorted.length} pings)`,
      measured: `${p50.toFixed(2)} / ${p99.toFixed(2)} ms`,
      limit: `${wireMs.toFixed(2)} ms wire time (${ping}+${pong} bytes)`,
      ratio: `${(p50 / wireMs).toFixed(1)}x / ${(p99 / wireMs).toFixed(1)}x`,
    });
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) printTable('Serial heartbeat RTT', await serialRtt());
