import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { appendFileSync, constants as fsConstants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DurableOutbox,
  type DropReason,
  type DurableOutboxOptions,
  type OutboxEntry,
  type OutboxKind,
  type OutboxMessage,
} from '../../host/mqtt/durable-outbox.ts';
import { encodeHeader, nodeFs, parseJournal, type OutboxFs } from '../../host/mqtt/outbox-journal.ts';
import { JournalFdPool } from '../../host/mqtt/journal-fd-pool.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';

let dir: string;
let journal: string;
const opened: DurableOutbox[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tether-outbox-'));
  journal = join(dir, 'dev.outbox');
});

afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
  rmSync(dir, { recursive: true, force: true });
});

async function open(options: DurableOutboxOptions = {}, path = journal): Promise<DurableOutbox> {
  const o = await DurableOutbox.open(path, options);
  opened.push(o);
  return o;
}

function msg(topic: string, payload: string, kind: OutboxKind = 'telemetry', retain = false, qos: 0 | 1 = 1): OutboxMessage {
  return { topic, payload: Buffer.from(payload), qos, retain, kind };
}

/** What identifies an entry, payload as text. */
function view(e: OutboxEntry) {
  return { id: e.id, topic: e.topic, payload: e.payload.toString(), kind: e.kind, retain: e.retain, qos: e.qos };
}

function recordDrops(o: DurableOutbox) {
  const drops: Array<{ topic: string; payload: string; kind: OutboxKind; reason: DropReason }> = [];
  o.on('drop', (e: OutboxEntry, reason: DropReason) =>
    drops.push({ topic: e.topic, payload: e.payload.toString(), kind: e.kind, reason }),
  );
  return drops;
}

describe('DurableOutbox: journal round trip', () => {
  it('creates no journal until a record has to be written, then one with a header line and the record', async () => {
    const o = await open();
    expect(o.size).toBe(0);
    expect(o.bytes).toBe(0);
    expect(o.pending()).toEqual([]);
    expect(existsSync(journal)).toBe(false);
    await o.flush();
    expect(existsSync(journal)).toBe(false);
    const e = o.enqueue(msg('t', 'v'));
    await o.flush();
    expect(readFileSync(journal, 'utf8')).toMatch(/^[0-9a-f]{8} \{"tether-outbox":2,"next":2\}\n[0-9a-f]{8} \{"id":1,/);
    expect(parseJournal(readFileSync(journal)).records).toEqual([{ type: 'entry', entry: e }]);
  });

  it('creates the directory of the journal when missing, with the first record', async () => {
    const o = await open({}, join(dir, 'a', 'b', 'x.outbox'));
    expect(existsSync(join(dir, 'a', 'b'))).toBe(false);
    o.enqueue(msg('t', 'v'));
    await o.flush();
    expect(statSync(join(dir, 'a', 'b', 'x.outbox')).isFile()).toBe(true);
  });

  it('a reopened outbox holds exactly the unacked entries, in order, with their ids; ids keep increasing', async () => {
    const a = await open();
    const entries = [
      a.enqueue(msg('dev/temp', '21.5')),
      a.enqueue(msg('dev/$state', 'ready', 'state', true)),
      a.enqueue(msg('dev/temp', '21.6', 'telemetry', false, 0)),
      a.enqueue({ topic: 'dev/bin', payload: Buffer.from([0, 255, 10, 13]), qos: 1, retain: false, kind: 'other' }),
      a.enqueue(msg('dev/temp', '21.7')),
    ];
    expect(entries.map((e) => e.id)).toEqual([1, 2, 3, 4, 5]);
    a.ack(1);
    a.ack(4);
    a.ack(5); // the newest: its id must not come back
    expect(a.size).toBe(2);
    await a.close();

    const b = await open();
    expect(b.pending().map(view)).toEqual([entries[1], entries[2]].map(view));
    expect(b.pending()[0].enqueuedAt).toBe(entries[1].enqueuedAt);
    expect(b.bytes).toBe('dev/$state'.length + 5 + 'dev/temp'.length + 4);
    expect(b.recovery).toEqual({ entries: 2, torn: 0, corrupt: 0 });
    expect(b.enqueue(msg('dev/temp', '22')).id).toBe(6);
  });

  it('recovers without close(), as after kill -9 (records are written once flush() resolved)', async () => {
    const a = await open();
    for (let i = 0; i < 10; i++) a.enqueue(msg(`t/${i % 3}`, `v${i}`));
    a.ack(3);
    await a.flush();
    // no close: read the file as another process would
    const b = await open();
    expect(b.pending().map((e) => e.id)).toEqual([1, 2, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('pending(limit) gives the oldest first and does not remove anything', async () => {
    const o = await open();
    for (let i = 0; i < 5; i++) o.enqueue(msg('t', String(i)));
    expect(o.pending(2).map((e) => e.payload.toString())).toEqual(['0', '1']);
    expect(o.pending(0)).toEqual([]);
    expect(o.size).toBe(5);
  });

  it('ack is idempotent and ignores unknown ids without writing', async () => {
    const o = await open();
    const e = o.enqueue(msg('t', 'x'));
    o.ack(e.id);
    await o.flush();
    const size = statSync(journal).size;
    o.ack(e.id);
    o.ack(999);
    await o.flush();
    expect(statSync(journal).size).toBe(size);
    expect(o.size).toBe(0);
  });

  it('copies the payload: changing the caller buffer afterwards changes nothing', async () => {
    const o = await open();
    const payload = Buffer.from('abc');
    o.enqueue({ topic: 't', payload, qos: 1, retain: false, kind: 'telemetry' });
    payload.write('zzz');
    expect(o.pending()[0].payload.toString()).toBe('abc');
  });

  it('rejects invalid messages and use after close', async () => {
    const o = await open();
    expect(() => o.enqueue({ ...msg('t', 'x'), kind: 'bogus' as OutboxKind })).toThrow(TypeError);
    expect(() => o.enqueue({ ...msg('t', 'x'), qos: 2 as 0 })).toThrow(TypeError);
    expect(() => o.enqueue(msg('', 'x'))).toThrow(TypeError);
    await o.close();
    expect(() => o.enqueue(msg('t', 'x'))).toThrow(/closed/);
  });
});

describe('DurableOutbox: crash leftovers', () => {
  it('tolerates a torn last line, counts and logs it, and leaves a clean journal', async () => {
    const a = await open();
    a.enqueue(msg('t', 'one'));
    a.enqueue(msg('t', 'two'));
    await a.flush();
    appendFileSync(journal, '{"id":3,"at":1,"kind":"telemetry","qos":1,"retain":false,"topic":"t","payl');
    const logger = new RecordingLogger();
    const b = await open({ logger });
    expect(b.pending().map((e) => e.payload.toString())).toEqual(['one', 'two']);
    expect(b.recovery.torn).toBe(1);
    expect(logger.records.some((r) => r.level === 'warn' && /torn/.test(r.msg ?? ''))).toBe(true);
    // The rewrite on open removed the torn bytes, so appending after it is safe.
    b.enqueue(msg('t', 'three'));
    await b.flush();
    const c = await open();
    expect(c.recovery.torn).toBe(0);
    expect(c.pending().map((e) => e.payload.toString())).toEqual(['one', 'two', 'three']);
  });

  it('accepts a complete last record that only lacks its newline', async () => {
    const a = await open();
    a.enqueue(msg('t', 'one'));
    a.enqueue(msg('t', 'two'));
    await a.flush();
    writeFileSync(journal, readFileSync(journal, 'utf8').replace(/\n$/, ''));
    const b = await open();
    expect(b.pending().map((e) => e.payload.toString())).toEqual(['one', 'two']);
    expect(b.recovery.torn).toBe(0);
  });

  it('a journal cut inside its header is an empty outbox', async () => {
    writeFileSync(journal, '{"tether-ou');
    const o = await open();
    expect(o.size).toBe(0);
    expect(o.recovery.torn).toBe(1);
  });

  it('skips and reports a corrupt record in the middle', async () => {
    writeFileSync(
      journal,
      [
        '{"tether-outbox":1,"next":1}',
        '{"id":1,"at":0,"kind":"telemetry","qos":1,"retain":false,"topic":"t","payload":"YQ=="}',
        'garbage',
        '{"id":2,"at":0,"kind":"nope","qos":1,"retain":false,"topic":"t","payload":"Yg=="}',
        '{"id":3,"at":0,"kind":"state","qos":0,"retain":true,"topic":"s","payload":"Yw=="}',
        '',
      ].join('\n'),
    );
    const logger = new RecordingLogger();
    const o = await open({ logger });
    expect(o.pending().map(view)).toEqual([
      { id: 1, topic: 't', payload: 'a', kind: 'telemetry', retain: false, qos: 1 },
      { id: 3, topic: 's', payload: 'c', kind: 'state', retain: true, qos: 0 },
    ]);
    expect(o.recovery.corrupt).toBe(2);
    expect(logger.records.some((r) => r.level === 'error' && (r.obj as { corrupt?: number }).corrupt === 2)).toBe(true);
    expect(o.enqueue(msg('t', 'd')).id).toBe(4);
  });

  it('moves aside (never overwrites) a file that is not a journal, or of an unknown version, and starts empty', async () => {
    writeFileSync(journal, 'hello world\nmore\n');
    const a = await open();
    expect(a.size).toBe(0);
    expect(a.recovery.movedAsideReason).toMatch(/not a tether outbox/);
    expect(readFileSync(a.recovery.movedAside!, 'utf8')).toBe('hello world\nmore\n');
    await a.close();
    rmSync(a.recovery.movedAside!);
    writeFileSync(journal, '{"tether-outbox":3}\n');
    const b = await open();
    expect(b.recovery.movedAsideReason).toMatch(/version 3/);
    expect(readFileSync(b.recovery.movedAside!, 'utf8')).toBe('{"tether-outbox":3}\n');
  });
});

describe('DurableOutbox: bounds', () => {
  it('drops the oldest telemetry first, counting, emitting and logging each drop', async () => {
    const logger = new RecordingLogger();
    const o = await open({ maxEntries: 4, logger, dropLogIntervalMs: 0 });
    const drops = recordDrops(o);
    o.enqueue(msg('s', 'state1', 'state', true));
    o.enqueue(msg('t', 'tel1'));
    o.enqueue(msg('o', 'other1', 'other'));
    o.enqueue(msg('t', 'tel2'));
    o.enqueue(msg('t', 'tel3')); // full: tel1 goes
    o.enqueue(msg('o', 'other2', 'other')); // full: tel2 goes
    expect(drops).toEqual([
      { topic: 't', payload: 'tel1', kind: 'telemetry', reason: 'full' },
      { topic: 't', payload: 'tel2', kind: 'telemetry', reason: 'full' },
    ]);
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['state1', 'other1', 'tel3', 'other2']);
    expect(o.dropped).toBe(2);
    expect(o.droppedByKind).toEqual({ telemetry: 2, state: 0, other: 0 });
    const warns = logger.records.filter((r) => r.level === 'warn');
    expect(warns).toHaveLength(2);
    expect(warns[1].obj).toMatchObject({
      component: 'outbox',
      topic: 't',
      kind: 'telemetry',
      reason: 'full',
      dropped: 2,
      droppedByKind: { telemetry: 2, state: 0, other: 0 },
      pending: 4,
    });

    // Drops are journaled: a reopened outbox does not bring them back.
    await o.flush();
    const again = await open({ maxEntries: 4 });
    expect(again.pending().map((e) => e.payload.toString())).toEqual(['state1', 'other1', 'tel3', 'other2']);
  });

  it('an outbox that emptied holds no per-kind or retained index (a fleet of idle outboxes); they come back, in order, for the next entries and bounds', async () => {
    const o = await open({ maxEntries: 2 });
    const indexes = () => {
      const inside = o as unknown as { byKind: Record<string, Map<number, unknown> | undefined>; retainedByTopic: Map<string, unknown> | undefined };
      return { kinds: Object.keys(inside.byKind).filter((k) => inside.byKind[k] !== undefined), retained: inside.retainedByTopic?.size ?? 0 };
    };
    expect(indexes()).toEqual({ kinds: [], retained: 0 });
    const a = o.enqueue(msg('s', 's1', 'state', true));
    const b = o.enqueue(msg('t', 't1'));
    expect(indexes()).toEqual({ kinds: ['telemetry', 'state'], retained: 1 });
    o.ack(a.id);
    o.ack(b.id);
    expect(indexes()).toEqual({ kinds: [], retained: 0 });
    // Made again: coalescing finds the retained value, the bound drops the oldest telemetry.
    const drops = recordDrops(o);
    o.enqueue(msg('s', 's2', 'state', true));
    o.enqueue(msg('s', 's3', 'state', true));
    expect(o.coalesced).toBe(1);
    o.enqueue(msg('t', 't2'));
    o.enqueue(msg('t', 't3'));
    expect(drops.map((d) => d.payload)).toEqual(['t2']);
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['s3', 't3']);
  });

  it('then the oldest other; state only when nothing else is left; telemetry into a queue of state drops itself', async () => {
    const o = await open({ maxEntries: 3 });
    const drops = recordDrops(o);
    o.enqueue(msg('o', 'o1', 'other'));
    o.enqueue(msg('s1', 'a', 'state', true));
    o.enqueue(msg('o', 'o2', 'other'));
    o.enqueue(msg('s2', 'b', 'state', true)); // no telemetry: o1 goes
    o.enqueue(msg('s3', 'c', 'state', true)); // o2 goes
    expect(drops.map((d) => d.payload)).toEqual(['o1', 'o2']);
    o.enqueue(msg('t', 'tel')); // only state queued: the telemetry message itself is dropped
    expect(drops.map((d) => d.payload)).toEqual(['o1', 'o2', 'tel']);
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['a', 'b', 'c']);
    o.enqueue(msg('s4', 'd', 'state', true)); // nothing but state: the oldest state goes
    expect(drops.at(-1)).toEqual({ topic: 's1', payload: 'a', kind: 'state', reason: 'full' });
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['b', 'c', 'd']);
    expect(o.droppedByKind).toEqual({ telemetry: 1, state: 1, other: 2 });
  });

  it('bounds bytes (topic + payload) the same way; a message bigger than maxBytes is dropped on arrival', async () => {
    const o = await open({ maxBytes: 20 });
    const drops = recordDrops(o);
    o.enqueue(msg('s', '123456789', 'state', true)); // 10 bytes
    o.enqueue(msg('t', '1234')); // 5
    o.enqueue(msg('t', '1234')); // 5: 20 bytes, full
    o.enqueue(msg('t', 'x')); // 2 more: one telemetry goes
    expect(o.bytes).toBe(17);
    expect(drops).toHaveLength(1);
    const big = o.enqueue(msg('t', 'x'.repeat(30)));
    expect(drops.at(-1)!.payload).toBe(big.payload.toString());
    expect(o.size).toBe(3);
    expect(o.has(big.id)).toBe(false);
    // A telemetry message needing more room than all older telemetry frees drops itself alone.
    o.enqueue(msg('t', 'y'.repeat(12)));
    expect(o.size).toBe(3);
    expect(drops.at(-1)!.payload).toBe('y'.repeat(12));
    // Its id is still used up, also across a reopen.
    await o.close();
    const b = await open({ maxBytes: 20 });
    expect(b.enqueue(msg('t', 'z')).id).toBe(big.id + 2);
  });

  it('rate-limits drop warnings and then logs how many were left out', async () => {
    const clock = new ManualClock();
    const logger = new RecordingLogger();
    const o = await open({ maxEntries: 2, clock, logger, dropLogIntervalMs: 1000 });
    for (let i = 0; i < 50; i++) o.enqueue(msg(`t/${i}`, String(i)));
    const warns = () => logger.records.filter((r) => r.level === 'warn');
    expect(o.dropped).toBe(48);
    expect(warns()).toHaveLength(1);
    expect(warns()[0].obj).toMatchObject({ topic: 't/0', dropped: 1 });
    clock.advance(1000);
    expect(warns()).toHaveLength(2);
    expect(warns()[1].obj).toMatchObject({ droppedSinceLastLog: 47, dropped: 48, topic: 't/47' });
    expect(warns()[1].msg).toMatch(/47 more/);
    clock.advance(5000);
    expect(warns()).toHaveLength(2);
  });

  it('enforces smaller bounds on a reopened journal', async () => {
    const a = await open();
    a.enqueue(msg('s', 'state', 'state', true));
    for (let i = 0; i < 5; i++) a.enqueue(msg('t', String(i)));
    await a.close();
    const b = await open({ maxEntries: 3 });
    expect(b.pending().map((e) => e.payload.toString())).toEqual(['state', '3', '4']);
    expect(b.dropped).toBe(3);
  });
});

describe('DurableOutbox: retained state coalescing', () => {
  it('a newer retained value for a topic replaces the pending older one, counted apart from drops', async () => {
    const o = await open();
    const coalesced: Array<[number, number]> = [];
    o.on('coalesce', (older: OutboxEntry, newer: OutboxEntry) => coalesced.push([older.id, newer.id]));
    const drops = recordDrops(o);
    o.enqueue(msg('dev/$state', 'init', 'state', true));
    o.enqueue(msg('dev/temp', '1'));
    o.enqueue(msg('dev/temp', '2')); // not retained: both kept
    o.enqueue(msg('dev/$state', 'ready', 'state', true));
    o.enqueue(msg('dev/other', 'x', 'state', true));
    o.enqueue(msg('dev/$state', 'sleeping', 'state', true));
    expect(o.pending().map((e) => `${e.topic}=${e.payload}`)).toEqual([
      'dev/temp=1',
      'dev/temp=2',
      'dev/other=x',
      'dev/$state=sleeping',
    ]);
    expect(o.coalesced).toBe(2);
    expect(coalesced).toEqual([
      [1, 4],
      [4, 6],
    ]);
    expect(o.dropped).toBe(0);
    expect(drops).toEqual([]);
    await o.flush();
    const b = await open();
    expect(b.pending().map((e) => `${e.topic}=${e.payload}`)).toEqual(o.pending().map((e) => `${e.topic}=${e.payload}`));
  });

  it('coalescing makes room, so a full queue of state does not drop for an update of its own topic', async () => {
    const o = await open({ maxEntries: 2 });
    o.enqueue(msg('a', '1', 'state', true));
    o.enqueue(msg('b', '1', 'state', true));
    o.enqueue(msg('a', '2', 'state', true));
    expect(o.dropped).toBe(0);
    expect(o.pending().map((e) => `${e.topic}=${e.payload}`)).toEqual(['b=1', 'a=2']);
  });

  it('retained telemetry is never coalesced: every sample stays queued', async () => {
    const o = await open();
    o.enqueue(msg('dev/light/value', '1', 'telemetry', true));
    o.enqueue(msg('dev/light/value', '2', 'telemetry', true));
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['1', '2']);
    expect(o.coalesced).toBe(0);
  });

  it('an acked retained value is not coalesced with a later one', async () => {
    const o = await open();
    const first = o.enqueue(msg('a', '1', 'state', true));
    o.ack(first.id);
    o.enqueue(msg('a', '2', 'state', true));
    expect(o.coalesced).toBe(0);
    expect(o.size).toBe(1);
  });
});

describe('DurableOutbox: compaction', () => {
  it('compact() keeps the pending entries and shrinks the file', async () => {
    const o = await open({ compactEvery: 1_000_000 });
    for (let i = 0; i < 200; i++) o.enqueue(msg('t', `value ${i}`));
    for (let id = 1; id <= 190; id++) o.ack(id);
    await o.flush();
    const before = statSync(journal).size;
    const pending = o.pending().map(view);
    await o.compact();
    expect(statSync(journal).size).toBeLessThan(before / 5);
    expect(o.pending().map(view)).toEqual(pending);
    o.enqueue(msg('t', 'after'));
    await o.flush();
    const b = await open();
    expect(b.pending().map(view)).toEqual([...pending, { ...pending[0], id: 201, payload: 'after' }]);
    expect(parseJournal(readFileSync(journal)).records.filter((r) => r.type !== 'entry')).toEqual([]);
  });

  it('flush() also waits for a compaction wanted behind the one under way (found by the property test)', async () => {
    // Two compactions in a row, then flush(): the second must not rename its snapshot over the
    // journal after flush() resolved (a new outbox opened there would lose what it appends).
    for (let i = 0; i < 20; i++) {
      const path = join(dir, `two-compactions-${i}.outbox`);
      const first = await open({}, path);
      void first.compact();
      void first.compact();
      await first.flush();
      const second = await open({}, path);
      second.enqueue(msg('a', `after-${i}`));
      await second.flush();
      const third = await open({}, path);
      expect(third.pending().map((e) => e.payload.toString())).toEqual([`after-${i}`]);
    }
  });

  it('ids keep increasing after a compaction that left nothing', async () => {
    const o = await open();
    for (let i = 0; i < 3; i++) o.ack(o.enqueue(msg('t', 'x')).id);
    await o.compact();
    expect(readFileSync(journal, 'utf8')).toBe(`${encodeHeader(4)}\n`);
    await o.close();
    const b = await open();
    expect(b.enqueue(msg('t', 'y')).id).toBe(4);
  });

  it('compacts sooner when garbage outgrows the live part by 2 * maxBytes (few, huge entries)', async () => {
    const o = await open({ compactEvery: 1_000_000, maxBytes: 1000 });
    o.enqueue(msg('keep', 'k'));
    let peak = 0;
    for (let i = 0; i < 50; i++) {
      o.ack(o.enqueue(msg('t', 'x'.repeat(900))).id);
      await o.flush();
      peak = Math.max(peak, statSync(journal).size);
    }
    expect(peak).toBeLessThan(2 * 1000 + 3 * 1300);
    expect((await open({ maxBytes: 1000 })).pending().map((e) => e.topic)).toEqual(['keep']);
  });

  it('compacts by itself after compactEvery removals once the journal is mostly garbage', async () => {
    const o = await open({ compactEvery: 50 });
    for (let i = 0; i < 49; i++) o.ack(o.enqueue(msg('t', 'x'.repeat(100))).id);
    await o.flush();
    const grown = statSync(journal).size;
    expect(grown).toBeGreaterThan(49 * 100);
    o.ack(o.enqueue(msg('t', 'x')).id);
    await o.flush();
    expect(statSync(journal).size).toBeLessThan(100);
  });
});

describe('DurableOutbox: the journal fd is closed while idle', () => {
  /** nodeFs that logs opens, syncs and closes of the journal and its compaction temp file (which becomes the journal). */
  function tracingFs() {
    const calls: string[] = [];
    const open = new Set<number>();
    let written: (() => void) | undefined;
    /** Resolves after the next write to the journal has finished. */
    const nextWrite = () => new Promise<void>((resolve) => (written = resolve));
    const io: OutboxFs = {
      ...nodeFs,
      async write(fd, buffer, offset, length) {
        const n = await nodeFs.write(fd, buffer, offset, length);
        if (open.has(fd)) {
          written?.();
          written = undefined;
        }
        return n;
      },
      async open(path, flags, mode) {
        const fd = await nodeFs.open(path, flags, mode);
        if (path === journal || path === `${journal}.compact`) {
          open.add(fd);
          calls.push('open');
        }
        return fd;
      },
      async sync(fd) {
        await nodeFs.sync(fd);
        if (open.has(fd)) calls.push('sync');
      },
      async close(fd) {
        if (open.delete(fd)) calls.push('close');
        return nodeFs.close(fd);
      },
      async rename(from, to) {
        await nodeFs.rename(from, to);
        if (to === journal) calls.push('rename');
      },
    };
    return { io, calls, open, nextWrite };
  }

  it('closes it after idleCloseMs with nothing under way, and opens it again (append) for the next record', async () => {
    const clock = new ManualClock();
    const { io, calls, open: fds } = tracingFs();
    const o = await open({ fs: io, clock });
    o.enqueue(msg('t', 'a'));
    await o.flush();
    expect(o.journalOpen).toBe(true);
    clock.advance(999);
    expect(o.journalOpen).toBe(true);
    clock.advance(1);
    expect(o.journalOpen).toBe(false);
    expect(fds.size).toBe(0); // the renamed compaction fd was the one held: now none

    calls.length = 0;
    o.ack(o.enqueue(msg('t', 'b')).id);
    await o.flush();
    expect(o.journalOpen).toBe(true);
    expect(calls).toEqual(['open', 'sync']); // appended through a new fd, synced before flush() resolved
    clock.advance(1000);
    expect(o.journalOpen).toBe(false);
    expect(calls).toEqual(['open', 'sync', 'close']);

    const again = await DurableOutbox.open(journal);
    opened.push(again);
    expect(again.pending().map((e) => e.payload.toString())).toEqual(['a']);
    expect(again.recovery).toMatchObject({ torn: 0, corrupt: 0 });
  });

  it("under fsync 'always' a written ack is synced before its fd is closed, and I/O in between puts the close off", async () => {
    const clock = new ManualClock();
    const { io, calls } = tracingFs();
    const o = await open({ fs: io, clock });
    const e = o.enqueue(msg('t', 'a'));
    await o.flush();
    clock.advance(600);
    calls.length = 0;
    o.ack(e.id); // written at once, synced within ACK_SYNC_MS (1000)
    await o.flush(); // written and synced (flush() syncs written acks at once)
    clock.advance(400); // the first idle deadline, but there was I/O since: not yet
    expect(o.journalOpen).toBe(true);
    clock.advance(599);
    expect(o.journalOpen).toBe(true);
    clock.advance(1);
    expect(o.journalOpen).toBe(false);
    expect(calls).toEqual(['sync', 'close']);
  });

  it('an ack waiting for its batched sync keeps the fd open until the sync', async () => {
    const clock = new ManualClock();
    const { io, calls, nextWrite } = tracingFs();
    const o = await open({ fs: io, clock, idleCloseMs: 0 });
    const e = o.enqueue(msg('t', 'a'));
    await o.flush();
    clock.advance(0);
    expect(o.journalOpen).toBe(false);
    calls.length = 0;
    const write = nextWrite();
    o.ack(e.id); // written through a new fd; its sync waits for ACK_SYNC_MS
    await write;
    clock.advance(0);
    expect(o.journalOpen).toBe(true); // written, not yet synced: not idle
    clock.advance(1000); // ACK_SYNC_MS: the sync
    await o.flush();
    clock.advance(0);
    expect(o.journalOpen).toBe(false);
    expect(calls).toEqual(['open', 'sync', 'close']);
  });

  it('a journal removed while its fd was closed is a disk error: degraded, then rewritten from memory', async () => {
    const clock = new ManualClock();
    const logger = new RecordingLogger();
    const o = await open({ clock, logger, diskRetryMs: 1000 });
    o.enqueue(msg('t', 'a'));
    await o.flush();
    clock.advance(1000);
    expect(o.journalOpen).toBe(false);
    rmSync(journal);
    o.enqueue(msg('t', 'b'));
    await o.flush();
    expect(o.degraded).toBe(true);
    expect(logger.records.find((r) => r.level === 'error')!.obj).toMatchObject({ code: 'ENOENT', path: journal });
    clock.advance(1000);
    o.enqueue(msg('t', 'c'));
    await o.flush();
    expect(o.degraded).toBe(false);
    const again = await DurableOutbox.open(journal);
    opened.push(again);
    expect(again.pending().map((e) => e.payload.toString())).toEqual(['a', 'b', 'c']);
  });

  it('a shared JournalFdPool bounds the journals holding a descriptor; an idle holder gives its own up at once to a waiter', async () => {
    const clock = new ManualClock();
    const pool = new JournalFdPool(2);
    const boxes = await Promise.all([0, 1, 2].map((i) => open({ clock, fdPool: pool }, join(dir, `b${i}.outbox`))));
    // Opening creates nothing: no descriptor yet.
    expect(pool.held).toBe(0);
    expect(boxes.filter((b) => b.journalOpen).length).toBeLessThanOrEqual(2);
    // All three write at once: every record is written, never more than two journals open.
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, boxes.filter((b) => b.journalOpen).length)), 0);
    for (const [i, b] of boxes.entries()) b.enqueue(msg('t', `m${i}`));
    await Promise.all(boxes.map((b) => b.flush()));
    clearInterval(watch);
    expect(most).toBeLessThanOrEqual(2);
    expect(pool.held).toBeLessThanOrEqual(2);
    expect(pool.waiting).toBe(0);
    for (const b of boxes) await b.close();
    expect(pool.held).toBe(0);
    for (const i of [0, 1, 2]) {
      const again = await DurableOutbox.open(join(dir, `b${i}.outbox`));
      opened.push(again);
      expect(again.pending().map((e) => e.payload.toString())).toEqual([`m${i}`]);
    }
  });

  it('idleCloseMs: Infinity keeps it open; a negative value is refused', async () => {
    const clock = new ManualClock();
    const o = await open({ clock, idleCloseMs: Infinity });
    o.enqueue(msg('t', 'a'));
    await o.flush();
    clock.advance(3_600_000);
    expect(o.journalOpen).toBe(true);
    await expect(DurableOutbox.open(join(dir, 'other.outbox'), { idleCloseMs: -1 })).rejects.toThrow(/idleCloseMs/);
  });
});

/** An fs that fails on demand, the way a full or broken disk does. */
function faultyFs() {
  const state = { failWrites: false, failOpen: false, partial: false, writes: 0 };
  const fail = (code: string) => Object.assign(new Error(`${code}: simulated`), { code });
  const io: OutboxFs = {
    ...nodeFs,
    async open(path, flags, mode) {
      if (state.failOpen && flags & (fsConstants.O_WRONLY | fsConstants.O_CREAT)) throw fail('ENOSPC');
      return nodeFs.open(path, flags, mode);
    },
    async write(fd, buffer, offset, length) {
      state.writes++;
      if (state.partial && length > 4) {
        // Half gets through, the rest fails: a torn record on disk.
        state.partial = false;
        await nodeFs.write(fd, buffer, offset, Math.floor(length / 2));
        throw fail('EIO');
      }
      if (state.failWrites) throw fail('ENOSPC');
      return nodeFs.write(fd, buffer, offset, length);
    },
  };
  return { io, state };
}

/** nodeFs counting the calls that change the disk (what creating or rewriting a journal costs). */
function countingFs() {
  const counts = { writeOpens: 0, writes: 0, syncs: 0, renames: 0, mkdirs: 0 };
  const io: OutboxFs = {
    ...nodeFs,
    async open(path, flags, mode) {
      if (flags & (fsConstants.O_WRONLY | fsConstants.O_CREAT)) counts.writeOpens++;
      return nodeFs.open(path, flags, mode);
    },
    async write(fd, buffer, offset, length) {
      counts.writes++;
      return nodeFs.write(fd, buffer, offset, length);
    },
    async sync(fd) {
      counts.syncs++;
      return nodeFs.sync(fd);
    },
    async rename(from, to) {
      counts.renames++;
      return nodeFs.rename(from, to);
    },
    async mkdir(path, options) {
      counts.mkdirs++;
      return nodeFs.mkdir(path, options);
    },
  };
  return { io, counts };
}

const memoryOnly = (m: OutboxMessage): OutboxMessage => ({ ...m, durable: false });

describe('DurableOutbox: start-up cost (issue 15: no file work per board before a record has to be written)', () => {
  it('memory-only entries (durable: false) are queued, coalesced, bounded and acked without touching the disk; a reopen forgets them', async () => {
    const { io, counts } = countingFs();
    const o = await open({ fs: io, maxEntries: 3 });
    const a = o.enqueue(memoryOnly(msg('d/$state', 'init', 'state', true)));
    const b = o.enqueue(memoryOnly(msg('d/$state', 'ready', 'state', true))); // coalesces a
    o.enqueue(memoryOnly(msg('d/t', '1')));
    o.enqueue(memoryOnly(msg('d/t', '2')));
    o.enqueue(memoryOnly(msg('d/t', '3'))); // over maxEntries: drops the oldest telemetry
    expect(o.has(a.id)).toBe(false);
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['ready', '2', '3']);
    expect(o.coalesced).toBe(1);
    expect(o.dropped).toBe(1);
    o.ack(b.id);
    await o.flush();
    expect(o.size).toBe(2);
    expect(counts).toEqual({ writeOpens: 0, writes: 0, syncs: 0, renames: 0, mkdirs: 0 });
    expect(existsSync(journal)).toBe(false);
    await o.close();
    expect((await open()).size).toBe(0);
  });

  it('a memory-only value that replaces a journaled retained value, or pushes a journaled entry out, journals that removal: neither comes back', async () => {
    const o = await open({ maxEntries: 2 });
    o.enqueue(msg('d/$state', 'lost', 'state', true));
    o.enqueue(msg('d/t', 'old telemetry'));
    await o.flush();
    o.enqueue(memoryOnly(msg('d/$state', 'ready', 'state', true))); // coalesces the journaled 'lost'
    o.enqueue(memoryOnly(msg('d/x', 'y', 'other'))); // full: drops the journaled telemetry
    await o.flush();
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['ready', 'y']);
    await o.close();
    expect((await open()).pending()).toEqual([]);
  });

  it('journaled and memory-only entries mixed: a reopen holds exactly the journaled ones not acked, and ids still grow past every journaled one', async () => {
    const o = await open();
    const kept = o.enqueue(msg('d/t', 'kept'));
    o.enqueue(memoryOnly(msg('d/$description', '{}', 'state', true)));
    const acked = o.enqueue(msg('d/t', 'acked'));
    o.ack(acked.id);
    await o.compact(); // the rewrite skips the memory-only entry
    await o.close();
    const again = await open();
    expect(again.pending().map(view)).toEqual([view(kept)]);
    expect(again.enqueue(msg('d/t', 'next')).id).toBeGreaterThan(acked.id);
  });

  it('knownAbsent (the caller listed the directory and the journal was not in it): open() asks the disk nothing and gives what a missing journal gives', async () => {
    const opens: string[] = [];
    const io: OutboxFs = { ...nodeFs, open: async (path, flags, mode) => (opens.push(path), nodeFs.open(path, flags, mode)) };
    const hinted = await open({ fs: io, knownAbsent: true });
    expect(opens).toEqual([]);
    const missing = await open({}, join(dir, 'missing.outbox'));
    expect(hinted.recovery).toEqual(missing.recovery);
    expect(hinted.size).toBe(0);
    // The first record creates the journal, as after a failed open.
    const first = hinted.enqueue(msg('t', 'a'));
    expect(first.id).toBe(missing.enqueue(msg('t', 'a')).id);
    await hinted.close();
    expect(opens).not.toEqual([]);
    expect((await open()).pending().map(view)).toEqual([view(first)]);
  });

  it('the gateway\'s way: one listing of the queue directory; a journal in it is recovered as before, one not in it is not opened', async () => {
    const present = join(dir, 'b1.outbox');
    const before = await open({}, present);
    const kept = before.enqueue(msg('t', 'kept'));
    before.ack(before.enqueue(msg('t', 'acked')).id);
    await before.close();
    const names = new Set(readdirSync(dir));
    const opens: string[] = [];
    const io: OutboxFs = { ...nodeFs, open: async (path, flags, mode) => (opens.push(path), nodeFs.open(path, flags, mode)) };
    const b1 = await open({ fs: io, knownAbsent: !names.has('b1.outbox') }, present);
    const b2 = await open({ fs: io, knownAbsent: !names.has('b2.outbox') }, join(dir, 'b2.outbox'));
    expect(opens).toEqual([present]);
    expect(b1.pending().map(view)).toEqual([view(kept)]);
    expect(b1.recovery).toMatchObject({ entries: 1, torn: 0, corrupt: 0 });
    expect(b1.enqueue(msg('t', 'next')).id).toBeGreaterThan(kept.id + 1);
    expect(b2.size).toBe(0);
  });

  it('a clean journal is appended to as it is at open (no rewrite, no sync); the next record opens it for append', async () => {
    const first = await open();
    first.enqueue(msg('t', 'a'));
    await first.close();
    const { io, counts } = countingFs();
    const o = await open({ fs: io });
    expect(counts).toEqual({ writeOpens: 0, writes: 0, syncs: 0, renames: 0, mkdirs: 0 });
    o.enqueue(msg('t', 'b'));
    await o.flush();
    expect(counts.renames).toBe(0);
    expect(counts.writes).toBe(1);
    await o.close();
    expect((await open()).pending().map((e) => e.payload.toString())).toEqual(['a', 'b']);
  });

  it('a journal whose last line lacks its newline (torn, or whole but unterminated) is rewritten at open, so the next record is not glued to it', async () => {
    for (const damage of ['unterminated', 'torn'] as const) {
      const path = join(dir, `${damage}.outbox`);
      const first = await open({}, path);
      first.enqueue(msg('t', 'a'));
      await first.close();
      const text = readFileSync(path, 'utf8');
      writeFileSync(path, damage === 'unterminated' ? text.replace(/\n$/, '') : `${text}0123abcd {"id":2,"at":`);
      const { io, counts } = countingFs();
      const o = await open({ fs: io }, path);
      expect(counts.renames, damage).toBe(1);
      expect(readFileSync(path, 'utf8').endsWith('\n')).toBe(true);
      o.enqueue(msg('t', 'b'));
      await o.close();
      const again = await open({}, path);
      expect(again.pending().map((e) => e.payload.toString()), damage).toEqual(['a', 'b']);
      expect(again.recovery.corrupt, damage).toBe(0);
    }
  });

  it('a journal that is mostly garbage (acked records past 64 KiB) is compacted at open', async () => {
    const first = await open({ compactEvery: 1_000_000 });
    for (let i = 0; i < 1000; i++) first.ack(first.enqueue(msg('t', 'x'.repeat(64))).id);
    await first.close();
    expect(statSync(journal).size).toBeGreaterThan(64 * 1024);
    const { io, counts } = countingFs();
    const o = await open({ fs: io });
    expect(counts.renames).toBe(1);
    expect(readFileSync(journal, 'utf8')).toBe(`${encodeHeader(1001)}\n`);
    expect(o.enqueue(msg('t', 'y')).id).toBe(1001);
  });
});

describe('DurableOutbox: disk errors', () => {
  it('never throws, keeps messages in memory, logs once, and catches up when the disk is back', async () => {
    const { io, state } = faultyFs();
    const clock = new ManualClock();
    const logger = new RecordingLogger();
    const o = await open({ fs: io, clock, logger, diskRetryMs: 1000 });
    const events: string[] = [];
    o.on('degraded', () => events.push('degraded'));
    o.on('recovered', () => events.push('recovered'));
    o.enqueue(msg('t', 'before'));
    await o.flush();

    state.failWrites = true;
    state.failOpen = true;
    const during = [o.enqueue(msg('t', 'd1')), o.enqueue(msg('t', 'd2'))];
    await o.flush();
    o.ack(1);
    clock.advance(1000);
    o.enqueue(msg('t', 'd3')); // a retry, failing again
    await o.flush();
    expect(o.degraded).toBe(true);
    expect(o.size).toBe(3);
    expect(o.diskErrors).toBe(2);
    expect(o.dropped).toBe(0);
    expect(events).toEqual(['degraded']);
    expect(logger.records.filter((r) => r.level === 'error')).toHaveLength(1);
    expect(logger.records.find((r) => r.level === 'error')!.obj).toMatchObject({ code: 'ENOSPC', path: journal });
    // While degraded the file is not appended to: it still ends in the last good record.
    expect(parseJournal(readFileSync(journal)).records.map((r) => r.type)).toEqual(['entry']);

    state.failWrites = false;
    state.failOpen = false;
    o.enqueue(msg('t', 'd4')); // within diskRetryMs of the last attempt: still in memory only
    expect(o.degraded).toBe(true);
    clock.advance(1000);
    o.enqueue(msg('t', 'after'));
    await o.flush();
    expect(o.degraded).toBe(false);
    expect(events).toEqual(['degraded', 'recovered']);
    expect(logger.records.some((r) => r.level === 'info' && /writable again/.test(r.msg ?? ''))).toBe(true);

    const b = await open();
    expect(b.pending().map((e) => e.payload.toString())).toEqual(['d1', 'd2', 'd3', 'd4', 'after']);
    expect(b.pending()[0].id).toBe(during[0].id);
  });

  it('compact() retries at once, regardless of diskRetryMs', async () => {
    const { io, state } = faultyFs();
    const o = await open({ fs: io, clock: new ManualClock(), diskRetryMs: 60_000 });
    state.failWrites = true;
    o.enqueue(msg('t', 'x'));
    await o.flush();
    expect(o.degraded).toBe(true);
    state.failWrites = false;
    await o.compact();
    expect(o.degraded).toBe(false);
    expect((await open()).pending().map((e) => e.payload.toString())).toEqual(['x']);
  });

  it('a write torn by the error leaves a journal a crashed process recovers from', async () => {
    const { io, state } = faultyFs();
    const o = await open({ fs: io });
    o.enqueue(msg('t', 'one'));
    await o.flush();
    state.partial = true;
    state.failWrites = true;
    expect(() => o.enqueue(msg('t', 'two-is-torn'))).not.toThrow();
    await o.flush();
    expect(o.degraded).toBe(true);
    // "Crash" now: another open reads the file as it is.
    const b = await open();
    expect(b.recovery.torn).toBe(1);
    expect(b.pending().map((e) => e.payload.toString())).toEqual(['one']);
  });

  it('drops with reason disk-error only when the bounds are hit while degraded', async () => {
    const { io, state } = faultyFs();
    const o = await open({ fs: io, maxEntries: 3 });
    const drops = recordDrops(o);
    state.failWrites = true;
    for (let i = 0; i < 3; i++) o.enqueue(msg('t', String(i)));
    await o.flush();
    expect(drops).toEqual([]);
    o.enqueue(msg('t', '3'));
    expect(drops).toEqual([{ topic: 't', payload: '0', kind: 'telemetry', reason: 'disk-error' }]);
    expect(o.dropped).toBe(1);
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['1', '2', '3']);
  });

  it('opens degraded (without throwing) when the journal cannot be written at all', async () => {
    const { io, state } = faultyFs();
    state.failOpen = true;
    const logger = new RecordingLogger();
    const o = await open({ fs: io, logger, diskRetryMs: 0 });
    expect(o.degraded).toBe(false); // nothing written yet: the first record finds out
    o.enqueue(msg('t', 'mem'));
    expect(o.size).toBe(1);
    await o.flush();
    expect(o.degraded).toBe(true);
    state.failOpen = false;
    o.enqueue(msg('t', 'disk'));
    await o.flush();
    expect(o.degraded).toBe(false);
    expect((await open()).pending().map((e) => e.payload.toString())).toEqual(['mem', 'disk']);
  });

  it('a failed compaction of a healthy journal keeps appending to the old one', async () => {
    const { io, state } = faultyFs();
    const logger = new RecordingLogger();
    const o = await open({ fs: io, logger });
    o.enqueue(msg('t', 'a'));
    await o.flush(); // the journal is created with it
    state.failOpen = true;
    await o.compact();
    expect(o.degraded).toBe(false);
    expect(logger.records.some((r) => r.level === 'warn' && /compaction failed/.test(r.msg ?? ''))).toBe(true);
    state.failOpen = false;
    o.enqueue(msg('t', 'b'));
    await o.flush();
    expect((await open()).pending().map((e) => e.payload.toString())).toEqual(['a', 'b']);
  });
});

// ---- model-based property ----

type Op =
  | { op: 'enqueue'; topic: string; payload: string; kind: OutboxKind; retain: boolean; qos: 0 | 1 }
  | { op: 'ack'; pick: number }
  | { op: 'ackUnknown' }
  | { op: 'compact' }
  | { op: 'reopen' }
  | { op: 'crash' };

interface ModelEntry {
  id: number;
  topic: string;
  payload: string;
  kind: OutboxKind;
  retain: boolean;
  qos: 0 | 1;
}

const MAX_ENTRIES = 6;
const MAX_BYTES = 40;

/** The policy, written the plain way. */
function modelEnqueue(queue: ModelEntry[], m: ModelEntry): ModelEntry[] {
  const size = (e: ModelEntry) => Buffer.byteLength(e.topic) + Buffer.byteLength(e.payload);
  if (size(m) > MAX_BYTES) return queue;
  const coalesces = (e: { retain: boolean; kind: OutboxKind }) => e.retain && e.kind === 'state';
  let rest = coalesces(m) ? queue.filter((e) => !(coalesces(e) && e.topic === m.topic)) : [...queue];
  const over = () => rest.length + 1 > MAX_ENTRIES || rest.reduce((n, e) => n + size(e), 0) + size(m) > MAX_BYTES;
  for (const kind of ['telemetry', 'other', 'state'] as const) {
    while (over() && rest.some((e) => e.kind === kind)) {
      const i = rest.findIndex((e) => e.kind === kind);
      rest = [...rest.slice(0, i), ...rest.slice(i + 1)];
    }
    if (over() && m.kind === kind) return queue;
  }
  return [...rest, m];
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('enqueue' as const),
      topic: fc.constantFrom('a', 'b', 'c/d'),
      payload: fc.string({ maxLength: 12 }),
      kind: fc.constantFrom<OutboxKind>('telemetry', 'state', 'other'),
      retain: fc.boolean(),
      qos: fc.constantFrom<0 | 1>(0, 1),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('ack' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ op: 'ackUnknown' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'compact' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'crash' as const }) },
);

describe('DurableOutbox: property', () => {
  it('any sequence of enqueue/ack/compact/reopen/crash keeps pending equal to the model', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), fc.integer({ min: 1, max: 5 }), async (ops, compactEvery) => {
        const path = join(dir, `prop-${run++}.outbox`);
        const options = { maxEntries: MAX_ENTRIES, maxBytes: MAX_BYTES, compactEvery };
        let o = await DurableOutbox.open(path, options);
        let model: ModelEntry[] = [];
        let nextId = 1;
        try {
          for (const op of ops) {
            switch (op.op) {
              case 'enqueue': {
                const e = o.enqueue({
                  topic: op.topic,
                  payload: Buffer.from(op.payload),
                  kind: op.kind,
                  retain: op.retain,
                  qos: op.qos,
                });
                expect(e.id).toBe(nextId);
                const { op: _op, ...message } = op;
                model = modelEnqueue(model, { id: nextId++, ...message });
                break;
              }
              case 'ack': {
                if (model.length === 0) break;
                const id = model[op.pick % model.length].id;
                o.ack(id);
                model = model.filter((e) => e.id !== id);
                break;
              }
              case 'ackUnknown':
                o.ack(nextId + 100);
                break;
              case 'compact':
                o.compact();
                break;
              case 'reopen':
                await o.close();
                o = await DurableOutbox.open(path, options);
                break;
              case 'crash': {
                // The next open reads whatever the file holds; close() of the old one comes after
                // (it writes nothing when healthy) only to release its fd.
                // What flush() confirmed is what a crash keeps (test/unit/outbox-crash-anywhere.test.ts
                // crashes between any two operations, without flush()).
                await o.flush();
                const old = o;
                o = await DurableOutbox.open(path, options);
                await old.close();
                break;
              }
            }
            expect(o.pending().map(view)).toEqual(model);
            expect(o.size).toBe(model.length);
          }
        } finally {
          await o.close();
        }
      }),
      { numRuns: 150 },
    );
  });
});
