// Benchmark 1: heartbeat RTT over a pty to the emulated Uno (real firmware), against the wire
// time of the PING and PONG frames at that baud (the physical floor). The emulator paces its
// UART, so those figures are mostly its pacing; hence also 1b: over a plain pty (socat) with a
// protocol-level board (SimulatedDevice), tether's DeviceLink against a raw serialport loop
// doing the same PING/PONG on the same pty: what tether itself adds.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BoardOnPty } from '../emulator/avr/board-on-pty.ts';
import { DeviceLink } from '../host/link/device-link.ts';
import { SerialPort } from 'serialport';
import { PtyBridge } from '../emulator/avr/pty-bridge.ts';
import { SimulatedDevice } from '../emulator/simulator/simulated-device.ts';
import { encodeFrame, FrameSplitter } from '../shared/protocol/index.ts';
import { waitFor } from '../test/support/wait-for.ts';
import { firmwareAtBaud, percentile, printTable, withDeadline, type Row } from './support.ts';

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
    await withDeadline(link.close(), 10_000, 'the DeviceLink to close');
    await withDeadline(board.close(), 10_000, 'the emulated board to close');
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
  rows.push(...(await serialRttPlainPty()));
  return rows;
}

const PLAIN_BAUD = 115200;
const PLAIN_INTERVAL_MS = 20;
/** The goal for what tether adds to a raw serialport loop (p50), ms. */
const ADDED_GOAL_MS = 0.18;

/** A protocol-level board behind a plain pty (socat): no UART pacing, only the software path. */
async function plainPtyBoard(): Promise<{ path: string; close(): Promise<void> }> {
  const path = join(mkdtempSync(join(tmpdir(), 'tether-rtt-plain-')), 'sim');
  const bridge = new PtyBridge(path);
  const device = new SimulatedDevice({ name: 'rtt-bench' });
  bridge.on('data', (bytes) => device.write(bytes));
  device.on('data', (bytes) => bridge.write(bytes));
  await bridge.open(10_000);
  device.boot();
  return {
    path,
    close: async () => {
      device.close();
      await withDeadline(bridge.close(), 10_000, 'the pty bridge to close');
    },
  };
}

/** tether: a DeviceLink pinging every PLAIN_INTERVAL_MS; its own RTT samples after ready. */
async function tetherPlainRtts(path: string, samples: number): Promise<number[]> {
  const link = new DeviceLink({ target: path, baudRate: PLAIN_BAUD, session: { pingIntervalMs: PLAIN_INTERVAL_MS, misses: 50 } });
  const rtts: number[] = [];
  link.on('rtt', (ms) => rtts.push(ms));
  link.start();
  try {
    await link.ready(15_000);
    rtts.length = 0; // the handshake's pings are warm-up
    await waitFor(() => rtts.length >= samples, { what: `${samples} tether RTT samples on a plain pty`, timeoutMs: 120_000, intervalMs: 50, detail: () => `${rtts.length} so far` });
  } finally {
    await withDeadline(link.close(), 10_000, 'the DeviceLink to close');
  }
  return rtts.slice(0, samples);
}

/**
 * The baseline: serialport on the same pty, the same PING frame every PLAIN_INTERVAL_MS, the
 * PONG found with the same FrameSplitter; RTT from before write() to the parsed PONG, as the
 * session measures it.
 */
async function rawPlainRtts(path: string, samples: number): Promise<number[]> {
  const port = new SerialPort({ path, baudRate: PLAIN_BAUD, autoOpen: false });
  await withDeadline(new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve()))), 10_000, `serialport to open ${path}`);
  const splitter = new FrameSplitter();
  let waiting: { seq: number; resolve: (at: number) => void } | undefined;
  port.on('data', (chunk: Buffer) => {
    for (const event of splitter.push(chunk)) {
      if (event.kind === 'message' && event.message.type === 'pong' && waiting && event.message.seq === waiting.seq) waiting.resolve(performance.now());
    }
  });
  const rtts: number[] = [];
  try {
    for (let i = 0; i < samples + 10; i++) {
      const seq = (i + 1) & 0xffff;
      const frame = encodeFrame({ type: 'ping', seq, leaseMs: 0 });
      const at = performance.now();
      const pong = new Promise<number>((resolve) => (waiting = { seq, resolve }));
      port.write(frame);
      // Timed where the PONG is parsed, as the session times it (not after the await's hops).
      const rtt = (await withDeadline(pong, 5000, `PONG ${seq} from the simulated board over the raw serialport loop`)) - at;
      if (i >= 10) rtts.push(rtt); // the first ten are warm-up
      await new Promise((r) => setTimeout(r, Math.max(0, PLAIN_INTERVAL_MS - rtt)));
    }
  } finally {
    await withDeadline(new Promise<void>((resolve) => port.close(() => resolve())), 10_000, 'serialport to close');
  }
  return rtts;
}

/**
 * 1b: RUNS pairs of runs (raw and tether back to back, the order alternating), each of
 * PLAIN_SAMPLES pings. Sub-millisecond differences drown in a shared machine's load swings
 * between runs, so the added latency is the median of the per-pair differences of p50, and
 * the pairs are short so that both halves of a pair see the same load.
 */
export async function serialRttPlainPty(): Promise<Row[]> {
  const runs = Number(process.env.TETHER_BENCH_RTT_RUNS ?? 7);
  const samples = Number(process.env.TETHER_BENCH_RTT_PLAIN_SAMPLES ?? 200);
  const board = await plainPtyBoard();
  const p50s = { tether: [] as number[], raw: [] as number[] };
  const p99s = { tether: [] as number[], raw: [] as number[] };
  const added: number[] = [];
  try {
    for (let run = 0; run < runs; run++) {
      for (const variant of run % 2 === 0 ? (['raw', 'tether'] as const) : (['tether', 'raw'] as const)) {
        const rtts = (variant === 'raw' ? await rawPlainRtts(board.path, samples) : await tetherPlainRtts(board.path, samples)).sort((a, b) => a - b);
        p50s[variant].push(percentile(rtts, 50));
        p99s[variant].push(percentile(rtts, 99));
      }
      added.push(p50s.tether[run]! - p50s.raw[run]!);
      if (process.env.TETHER_BENCH_VERBOSE) process.stderr.write(`plain pty run ${run}: tether p50 ${p50s.tether[run]!.toFixed(3)} raw p50 ${p50s.raw[run]!.toFixed(3)} ms\n`);
    }
  } finally {
    await board.close();
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const t50 = med(p50s.tether);
  const r50 = med(p50s.raw);
  const t99 = med(p99s.tether);
  const r99 = med(p99s.raw);
  const add = med(added);
  const range = `${Math.min(...added).toFixed(3)} to ${Math.max(...added).toFixed(3)}`;
  return [
    {
      benchmark: `serial RTT over a plain pty, protocol-level board (p50 / p99, ${samples} pings x ${runs} interleaved pairs, medians)`,
      measured: `tether ${t50.toFixed(3)} / ${t99.toFixed(3)} ms; adds ${add.toFixed(3)} ms at p50 (pairs: ${range})`,
      limit: `raw serialport loop ${r50.toFixed(3)} / ${r99.toFixed(3)} ms; goal: adds <= ${ADDED_GOAL_MS} ms`,
      ratio: `added ${(add / ADDED_GOAL_MS).toFixed(2)} of the goal`,
    },
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes('--plain')) printTable('Serial RTT over a plain pty', await serialRttPlainPty());
  else printTable('Serial heartbeat RTT', await serialRtt());
  process.exit(0);
}
