import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableOutbox, type OutboxEntry, type OutboxKind } from '../../host/mqtt/durable-outbox.ts';
import { OutboxPump, type Publisher } from '../../host/mqtt/outbox-pump.ts';

// Review point 7: thousands of random corruptions (bit flips, truncations, zeroed blocks) of a
// journal holding known messages. Whatever is recovered (and so published) must be exactly
// some of the known messages, byte for byte; every corruption must be counted (a truncation at
// a record boundary, or just before a record's '\n', is indistinguishable from a crash before
// those records, and is not one).

const RUNS = 2000;

/** Small, seeded PRNG (mulberry32) so a failure can be replayed. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Known {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
  kind: OutboxKind;
}

let dir: string;
let original: Buffer;
const known = new Map<number, Known>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tether-outbox-fuzz-'));
  const o = await DurableOutbox.open(join(dir, 'base.outbox'), { fsync: 'never', compactEvery: 1_000_000 });
  const random = rng(7);
  for (let i = 0; i < 40; i++) {
    const kind = (['telemetry', 'state', 'other'] as const)[i % 3];
    const payload = i % 5 === 0 ? Buffer.from(Array.from({ length: 1 + (i % 17) }, () => Math.floor(random() * 256))) : Buffer.from(`value-${i}`);
    const e = o.enqueue({ topic: `homie/5/dev/n${i % 4}/p${i % 6}`, payload, qos: (i % 2) as 0 | 1, retain: kind === 'state', kind });
    known.set(e.id, { topic: e.topic, payload: Buffer.from(e.payload), qos: e.qos, retain: e.retain, kind: e.kind });
    if (i % 4 === 1) o.ack(e.id);
  }
  await o.close();
  original = readFileSync(join(dir, 'base.outbox'));
  expect(original.length).toBeGreaterThan(2000);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sameAsKnown(e: OutboxEntry): boolean {
  const k = known.get(e.id);
  return !!k && k.topic === e.topic && k.payload.equals(e.payload) && k.qos === e.qos && k.retain === e.retain && k.kind === e.kind;
}

type Corruption = { kind: 'flip' | 'zero'; boundaryTruncation: false } | { kind: 'truncate'; boundaryTruncation: boolean };

function corrupt(random: () => number): { data: Buffer; what: Corruption; desc: string } {
  const data = Buffer.from(original);
  const r = random();
  if (r < 0.45) {
    const flips = 1 + Math.floor(random() * 3);
    const at: number[] = [];
    for (let i = 0; i < flips; i++) {
      const pos = Math.floor(random() * data.length);
      data[pos] ^= 1 << Math.floor(random() * 8);
      at.push(pos);
    }
    // Two flips of the same bit cancel out: that is no corruption.
    return { data, what: { kind: 'flip', boundaryTruncation: false }, desc: `flip at ${at}` };
  }
  if (r < 0.75) {
    const start = Math.floor(random() * data.length);
    const length = 1 + Math.floor(random() * 64);
    data.fill(0, start, Math.min(data.length, start + length));
    return { data, what: { kind: 'zero', boundaryTruncation: false }, desc: `zero ${start}+${length}` };
  }
  const length = Math.floor(random() * data.length);
  const cut = data.subarray(0, length);
  return { data: Buffer.from(cut), what: { kind: 'truncate', boundaryTruncation: length === 0 || cut[length - 1] === 0x0a || data[length] === 0x0a }, desc: `truncate to ${length}` };
}

describe('journal fuzz', () => {
  it(`${RUNS} random corruptions: never a wrong message recovered or published, every corruption counted`, async () => {
    const random = rng(20240611);
    const path = join(dir, 'dev.outbox');
    const tally = { flip: 0, zero: 0, truncate: 0, counted: 0, movedAside: 0, recoveredEntries: 0, published: 0 };
    const started = Date.now();
    for (let run = 0; run < RUNS; run++) {
      const { data, what, desc } = corrupt(random);
      tally[what.kind]++;
      writeFileSync(path, data);
      const o = await DurableOutbox.open(path, { fsync: 'never', maxEntries: 1000 });
      try {
        const pending = o.pending();
        for (const e of pending) expect(sameAsKnown(e), `run ${run} (${desc}): entry ${e.id} is not a known message`).toBe(true);
        expect(new Set(pending.map((e) => e.id)).size).toBe(pending.length);
        tally.recoveredEntries += pending.length;
        const { corrupt: bad, torn, movedAside, empty } = o.recovery;
        const counted = bad + torn > 0 || movedAside !== undefined || empty === true;
        if (movedAside) tally.movedAside++;
        if (counted) tally.counted++;
        const changed = !data.equals(original);
        if (changed && !what.boundaryTruncation) expect(counted, `run ${run} (${desc}) was not counted`).toBe(true);

        if (run % 50 === 0) {
          // What the pump publishes is what was recovered: check it on the wire side too.
          const published: OutboxEntry[] = [];
          const publisher = new (class extends EventEmitter implements Publisher {
            connected = true;
            async publish(topic: string, payload: Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
              const match = pending.find((e) => e.topic === topic && e.payload.equals(payload) && e.qos === opts.qos && e.retain === opts.retain);
              expect(match, `run ${run}: published ${topic} was not recovered`).toBeDefined();
              published.push(match!);
            }
          })();
          const pump = new OutboxPump(o, publisher);
          pump.start();
          await pump.flushed();
          await pump.stop();
          for (const e of published) expect(sameAsKnown(e)).toBe(true);
          tally.published += published.length;
        }
      } finally {
        await o.close();
        for (const f of readdirSync(dir)) if (f.startsWith('dev.outbox')) rmSync(join(dir, f));
      }
    }
    console.log(`journal fuzz: ${RUNS} corruptions in ${Date.now() - started} ms`, tally);
    expect(tally.counted).toBeGreaterThan(RUNS * 0.8);
    expect(tally.recoveredEntries).toBeGreaterThan(0);
  }, 60_000);
});
