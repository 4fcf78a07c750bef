import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DurableOutbox } from '../../host/mqtt/durable-outbox.ts';
import { OutboxPump, type Publisher } from '../../host/mqtt/outbox-pump.ts';

const WRITER = fileURLToPath(new URL('../fixtures/outbox/writer.ts', import.meta.url));

interface Report {
  /** id -> seq, for every `E` line. */
  enqueued: Map<number, number>;
  acked: Set<number>;
  done: boolean;
}

/**
 * Runs the writer and SIGKILLs it once `killWhen` holds for what it has reported (or lets it
 * kill itself, with `killWhen` never true).
 */
function runAndKill(args: string[], killWhen: (r: Report) => boolean): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', WRITER, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const report: Report = { enqueued: new Map(), acked: new Set(), done: false };
    let buffered = '';
    let stderr = '';
    let killed = false;
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      if (killed) return; // only what was reported before the kill counts
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const [tag, a, b] = buffered.slice(0, nl).split(' ');
        buffered = buffered.slice(nl + 1);
        if (tag === 'E') report.enqueued.set(Number(a), Number(b));
        else if (tag === 'A') report.acked.add(Number(a));
        else if (tag === 'DONE') report.done = true;
      }
      if (killWhen(report)) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.once('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(report);
      else reject(new Error(`writer exited on its own (${code ?? signal}): ${stderr}`));
    });
  });
}

let dir: string;
let journal: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tether-outbox-crash-'));
  journal = join(dir, 'dev.outbox');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('DurableOutbox across kill -9', () => {
  it('after the writer is killed, a reopened outbox holds every unacked message exactly once, in order, and delivers them', async () => {
    const report = await runAndKill([journal, '600', '4'], (r) => r.done);
    expect(report.enqueued.size).toBe(600);
    expect(report.acked.size).toBe(150);

    const outbox = await DurableOutbox.open(journal);
    const expected = [...report.enqueued].filter(([id]) => !report.acked.has(id));
    expect(outbox.recovery.torn).toBe(0);
    expect(outbox.pending().map((e) => [e.id, Number(e.payload.toString().split('|')[0])])).toEqual(expected);
    for (const e of outbox.pending()) expect(e.topic).toBe(`dev/t${report.enqueued.get(e.id)! % 3}`);

    // The broker is back: the pump delivers them all, in order, and empties the outbox.
    const delivered: number[] = [];
    const publisher = new (class extends EventEmitter implements Publisher {
      connected = true;
      async publish(_topic: string, payload: Buffer): Promise<void> {
        delivered.push(Number(payload.toString().split('|')[0]));
      }
    })();
    const pump = new OutboxPump(outbox, publisher);
    pump.start();
    await pump.flushed();
    await pump.stop();
    expect(delivered).toEqual(expected.map(([, seq]) => seq));
    await outbox.close();
    const after = await DurableOutbox.open(journal);
    expect(after.size).toBe(0);
    await after.close();
  });

  it('killed in the middle of a burst, everything it reported as enqueued (and not acked) is there', async () => {
    const report = await runAndKill([journal, '50000', '7', '2000'], (r) => r.enqueued.size >= 1500);
    expect(report.done).toBe(false);

    const outbox = await DurableOutbox.open(journal, { maxEntries: 1_000_000, maxBytes: 1 << 30 });
    const pending = outbox.pending();
    const ids = pending.map((e) => e.id);
    // In order, each once.
    expect(ids).toEqual([...new Set(ids)].sort((a, b) => a - b));
    const seqs = pending.map((e) => Number(e.payload.toString().split('|')[0]));
    expect(new Set(seqs).size).toBe(seqs.length);

    const present = new Set(ids);
    const lastReported = Math.max(...report.enqueued.keys());
    for (const [id, seq] of report.enqueued) {
      if (report.acked.has(id)) continue; // an ack reported may or may not have reached the disk
      expect(present.has(id), `entry ${id} (seq ${seq}) lost`).toBe(true);
    }
    for (const e of pending) {
      const seq = Number(e.payload.toString().split('|')[0]);
      if (report.enqueued.has(e.id)) expect(seq).toBe(report.enqueued.get(e.id));
      // Anything not reported was enqueued after the last report (the kill came before its line).
      else expect(e.id).toBeGreaterThan(lastReported);
      expect(e.payload.length).toBe(`${seq}|`.length + 2000);
    }
    expect(outbox.recovery.corrupt).toBe(0);
    await outbox.close();
  });

  it('killed by itself right after flush() confirmed an enqueue, that message is there', async () => {
    const report = await runAndKill([journal, '5000', '5', '100', '2345'], () => false);
    expect(report.done).toBe(false);
    expect(Math.max(...report.enqueued.values())).toBeLessThanOrEqual(2344);
    const outbox = await DurableOutbox.open(journal);
    const seqs = outbox.pending().map((e) => Number(e.payload.toString().split('|')[0]));
    // 0..2345 with every 5th acked (an ack is flushed with the next enqueue)
    const expected = Array.from({ length: 2346 }, (_, seq) => seq).filter((seq) => seq % 5 !== 4);
    expect(seqs).toEqual(expected);
    expect(outbox.recovery).toEqual({ entries: expected.length, torn: 0, corrupt: 0 });
    await outbox.close();
  });
});
