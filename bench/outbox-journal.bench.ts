// The durable outbox's journal on the real disk (the temp directory's filesystem):
//   1. throughput of enqueue -> on disk (flush() resolved) for each `queue.fsync` setting, a
//      burst of small messages; against the old way (a synchronous write + fsync per message);
//   2. event-loop delay (perf_hooks.monitorEventLoopDelay) while the outbox compacts a large
//      journal and fsyncs, with a 10 ms timer standing in for the boards' keepalive timers;
//      against the same bytes written, synced and renamed synchronously on the event loop.
// About 20-30 s.
import { closeSync, fdatasyncSync, mkdtempSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { DurableOutbox, type FsyncPolicy } from '../host/mqtt/durable-outbox.ts';
import { encodeEntry, nodeFs, type OutboxFs } from '../host/mqtt/outbox-journal.ts';
import { withDeadline, type Row } from './support.ts';

const BURST = 20_000;
const PAYLOAD = Buffer.alloc(64, 'x');
const yieldNow = () => new Promise<void>((r) => setImmediate(r));

function countingFs(): { io: OutboxFs; syncs: () => number } {
  let syncs = 0;
  return {
    io: { ...nodeFs, sync: (fd) => (syncs++, nodeFs.sync(fd)) },
    syncs: () => syncs,
  };
}

async function burst(fsync: FsyncPolicy): Promise<{ perSec: number; syncs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-journal-'));
  const { io, syncs } = countingFs();
  const outbox = await DurableOutbox.open(join(dir, 'dev.outbox'), { fsync, fs: io, maxEntries: 1_000_000, maxBytes: 1 << 30 });
  const before = syncs();
  const started = performance.now();
  // A producer that yields to the event loop every 200 messages, as board events would.
  for (let i = 0; i < BURST; i++) {
    outbox.enqueue({ topic: `homie/5/dev/n${i % 8}/value`, payload: PAYLOAD, qos: 1, retain: false, kind: 'telemetry' });
    if (i % 200 === 199) await yieldNow();
  }
  await withDeadline(outbox.flush(), 60_000, 'the outbox journal to be written and synced');
  const seconds = (performance.now() - started) / 1000;
  const result = { perSec: BURST / seconds, syncs: syncs() - before };
  await withDeadline(outbox.close(), 60_000, 'the outbox to close');
  rmSync(dir, { recursive: true, force: true });
  return result;
}

/** The old way: every enqueue a synchronous write and fdatasync (fsync: true before). */
function oldSyncPerMessage(count: number): number {
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-journal-'));
  const fd = openSync(join(dir, 'dev.outbox'), 'a', 0o600);
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const line = Buffer.from(encodeEntry({ id: i + 1, enqueuedAt: Date.now(), topic: `homie/5/dev/n${i % 8}/value`, payload: PAYLOAD, qos: 1, retain: false, kind: 'telemetry' }) + '\n');
    writeSync(fd, line);
    fdatasyncSync(fd);
  }
  const perSec = count / ((performance.now() - started) / 1000);
  closeSync(fd);
  rmSync(dir, { recursive: true, force: true });
  return perSec;
}

interface LoopDelay {
  p99: number;
  max: number;
  compactions: number;
  journalMiB: number;
  lateTicks: number;
}

/**
 * A large journal (ENTRIES x 1 KiB payloads) being compacted again and again while messages
 * keep coming, fsync 'always'; the event loop's delay meanwhile, and how many 10 ms ticks came
 * more than 50 ms late.
 */
async function loopDelayWhileCompacting(): Promise<LoopDelay> {
  const ENTRIES = 40_000;
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-journal-'));
  const outbox = await DurableOutbox.open(join(dir, 'dev.outbox'), { fsync: 'always', maxEntries: 1_000_000, maxBytes: 1 << 30, compactEvery: 1_000_000 });
  const big = Buffer.alloc(1024, 'y');
  for (let i = 0; i < ENTRIES; i++) {
    outbox.enqueue({ topic: `homie/5/dev/n${i % 8}/blob`, payload: big, qos: 1, retain: false, kind: 'other' });
    if (i % 500 === 499) await yieldNow();
  }
  await withDeadline(outbox.flush(), 60_000, 'the outbox journal to be written and synced');
  const journalMiB = (ENTRIES * (1024 * 4) / 3) / (1 << 20);

  const histogram = monitorEventLoopDelay({ resolution: 1 });
  let lateTicks = 0;
  let last = performance.now();
  const tick = setInterval(() => {
    const now = performance.now();
    if (now - last > 60) lateTicks++;
    last = now;
  }, 10);
  histogram.enable();
  let compactions = 0;
  let seq = 0;
  const producer = setInterval(() => {
    for (let i = 0; i < 20; i++) outbox.enqueue({ topic: 'homie/5/dev/t/value', payload: Buffer.from(String(seq++)), qos: 1, retain: false, kind: 'telemetry' });
  }, 5);
  const until = performance.now() + 6000;
  while (performance.now() < until) {
    await withDeadline(outbox.compact(), 60_000, 'a compaction');
    await withDeadline(outbox.flush(), 60_000, 'the outbox journal to be written and synced');
    compactions++;
  }
  clearInterval(producer);
  clearInterval(tick);
  histogram.disable();
  await withDeadline(outbox.close(), 60_000, 'the outbox to close');
  rmSync(dir, { recursive: true, force: true });
  return { p99: histogram.percentile(99) / 1e6, max: histogram.max / 1e6, compactions, journalMiB, lateTicks };
}

/** The same compaction done the old way: write, fdatasync and rename synchronously. */
function oldSyncCompactionStallMs(journalMiB: number): number {
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-journal-'));
  const chunk = Buffer.alloc(1 << 20, 'z');
  const started = performance.now();
  const fd = openSync(join(dir, 'dev.outbox.compact'), 'w', 0o600);
  for (let written = 0; written < journalMiB * (1 << 20); written += chunk.length) writeSync(fd, chunk);
  fdatasyncSync(fd);
  closeSync(fd);
  renameSync(join(dir, 'dev.outbox.compact'), join(dir, 'dev.outbox'));
  const stall = performance.now() - started;
  rmSync(dir, { recursive: true, force: true });
  return stall;
}

export async function outboxJournal(): Promise<Row[]> {
  const rows: Row[] = [];
  const old = oldSyncPerMessage(2000);
  for (const [label, policy] of [
    ['always', 'always'],
    ['batch 100 ms', { batchMs: 100 }],
    ['never', 'never'],
  ] as const) {
    const r = await burst(policy);
    const survives = label === 'never' ? 'kill -9' : label === 'always' ? 'kill -9 + power loss' : 'kill -9; power loss: last 100 ms lost';
    rows.push({
      benchmark: `outbox journal, fsync ${label}: burst of ${BURST} x 64 B, enqueue -> flush() (survives ${survives})`,
      measured: `${Math.round(r.perSec)} msg/s, ${r.syncs} fsyncs`,
      limit: `old sync write+fsync per message: ${Math.round(old)} msg/s`,
      ratio: `${(r.perSec / old).toFixed(1)}x`,
    });
  }
  const d = await loopDelayWhileCompacting();
  const stall = oldSyncCompactionStallMs(d.journalMiB);
  rows.push({
    benchmark: `event-loop delay while compacting a ${d.journalMiB.toFixed(0)} MiB journal (${d.compactions} times in 6 s) + fsync always, 400 msg/s in`,
    measured: `p99 ${d.p99.toFixed(1)} ms, max ${d.max.toFixed(1)} ms; 10 ms timer late >50 ms: ${d.lateTicks}x`,
    limit: `same bytes written+fsynced+renamed sync: ${stall.toFixed(0)} ms stall each`,
    ratio: `${(stall / d.p99).toFixed(1)}x lower p99`,
  });
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { printTable } = await import('./support.ts');
  printTable('outbox journal', await outboxJournal());
}
