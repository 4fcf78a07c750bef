import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableOutbox, type OutboxMessage } from '../../host/mqtt/durable-outbox.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { MqttWatcher } from '../support/mqtt-watcher.ts';

// Review points 6 and 7 through the real daemon (`tether daemon`, a child process) and a real
// Mosquitto: damaged journals left in its queue directory, as after a bad disk sector.

const msg = (topic: string, payload: string): OutboxMessage => ({ topic, payload: Buffer.from(payload), qos: 1, retain: false, kind: 'telemetry' });

function flipBit(path: string, needle: string, bit: number): void {
  const data = readFileSync(path);
  const at = data.indexOf(needle);
  expect(at, `${needle} in ${path}`).toBeGreaterThanOrEqual(0);
  data[at] ^= 1 << bit;
  writeFileSync(path, data);
}

async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the daemon on damaged journals', () => {
  it('a flipped byte in one header: that journal is moved aside, the daemon runs; flipped record bits are skipped, counted, never published', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-corrupt-daemon-'));
    const queue = join(dir, 'queue');
    mkdirSync(queue);
    // Journals written by the outbox itself, as a previous daemon run would have left them.
    const a = await DurableOutbox.open(join(queue, 'dev-a.outbox'));
    a.enqueue(msg('fuzz/dev-a/pending', 'a-1'));
    await a.close();
    const b = await DurableOutbox.open(join(queue, 'dev-b.outbox'));
    b.enqueue(msg('fuzz/dev-b/v', 'value-3')); // id 1
    b.enqueue(msg('fuzz/dev-b/v', 'value-4')); // id 2: payload bit flipped below
    b.enqueue(msg('fuzz/dev-b/w', 'value-5')); // id 3: topic bit flipped below
    b.enqueue(msg('fuzz/dev-b/v', 'value-6')); // id 4
    b.enqueue(msg('fuzz/dev-b/x', 'value-7')); // id 5, acked; the ack's id flipped to 4 below
    b.ack(5);
    await b.close();
    flipBit(join(queue, 'dev-a.outbox'), 'tether-outbox', 5); // header: 't' -> 'T'
    flipBit(join(queue, 'dev-b.outbox'), Buffer.from('value-4').toString('base64'), 0); // 'value-4' -> 'zalue-4'
    flipBit(join(queue, 'dev-b.outbox'), 'fuzz/dev-b/w', 5); // 'fuzz' -> 'Fuzz'
    flipBit(join(queue, 'dev-b.outbox'), '5}', 0); // {"ack":5} -> {"ack":4}

    const broker = await startMosquitto();
    const watcher = await MqttWatcher.connect(broker.url, '#');
    const daemon = new DaemonProcess(
      {
        gateway: { id: 'gw' },
        broker: { url: broker.url, keepaliveSec: 5 },
        queue: { dir: queue },
        metrics: { port: 0 },
        devices: [
          { id: 'dev-a', port: join(dir, 'no-port-a') },
          { id: 'dev-b', port: join(dir, 'no-port-b') },
        ],
      },
      dir,
    );
    daemon.start();
    try {
      const moved = await daemon.waitForLog((l) => /moved it aside/.test(l.msg ?? ''), 20_000);
      expect(moved.msg).toContain(join(queue, 'dev-a.outbox'));
      expect(moved.reason).toBe('not a tether outbox journal (header checksum mismatch)');
      expect(existsSync(String(moved.movedTo))).toBe(true);
      expect(readdirSync(queue).filter((f) => f.startsWith('dev-a.outbox.corrupt-'))).toHaveLength(1);
      const damaged = await daemon.waitForLog((l) => /damaged record/.test(l.msg ?? ''), 20_000);
      expect(damaged.msg).toContain(join(queue, 'dev-b.outbox'));
      expect(damaged.corrupt).toBe(3);
      await daemon.waitForLog((l) => /gateway gw started with 2 device/.test(l.msg ?? ''), 20_000);

      // The intact records of dev-b are delivered, entry 4 included (its ack was damaged, not
      // applied), and entry 5 again (at least once); the damaged ones never.
      const got = () => watcher.received.filter((r) => r.topic.toLowerCase().startsWith('fuzz/')).map((r) => `${r.topic}=${r.payload}`);
      await until(() => ['fuzz/dev-b/v=value-3', 'fuzz/dev-b/v=value-6', 'fuzz/dev-b/x=value-7'].every((m) => got().includes(m)), 20_000, 'dev-b delivered');
      // Both devices are online: their $state reached the broker.
      await until(() => ['dev-a', 'dev-b'].every((d) => watcher.received.some((r) => r.topic === `homie/5/${d}/$state`)), 20_000, 'both $state');
      await new Promise((r) => setTimeout(r, 300)); // anything else queued would have come with them
      expect(got().sort()).toEqual(['fuzz/dev-b/v=value-3', 'fuzz/dev-b/v=value-6', 'fuzz/dev-b/x=value-7']);
      expect(watcher.received.some((r) => r.topic.startsWith('Fuzz/') || /zalue/.test(r.payload))).toBe(false);

      // Counted in the metrics.
      const url = String((await daemon.waitForLog((l) => /Prometheus metrics at/.test(l.msg ?? ''))).url);
      const metrics = await (await fetch(url)).text();
      expect(metrics).toMatch(/tether_outbox_journal_moved_aside_total\{device="dev-a"\} 1/);
      expect(metrics).toMatch(/tether_outbox_journal_damaged_records_total\{device="dev-b",damage="corrupt"\} 3/);
      expect(await daemon.stop()).toBe(0);
    } finally {
      await daemon.kill9();
      await watcher.close();
      await broker.stop();
    }
  }, 60_000);
});
