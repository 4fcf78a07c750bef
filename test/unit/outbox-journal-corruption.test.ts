import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableOutbox, type DurableOutboxOptions, type OutboxMessage } from '../../host/mqtt/durable-outbox.ts';
import { crc32, nodeFs, parseJournal, readJournal, type JournalRecord, type OutboxFs } from '../../host/mqtt/outbox-journal.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';

let dir: string;
const opened: DurableOutbox[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tether-outbox-corrupt-'));
});
afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
  rmSync(dir, { recursive: true, force: true });
});

async function open(path: string, options: DurableOutboxOptions = {}): Promise<DurableOutbox> {
  const o = await DurableOutbox.open(path, options);
  opened.push(o);
  return o;
}

const msg = (topic: string, payload: string): OutboxMessage => ({ topic, payload: Buffer.from(payload), qos: 1, retain: false, kind: 'telemetry' });

/** Flips bit `bit` of the first byte of `needle` found in the file. */
function flipBitOf(path: string, needle: string, bit: number, nth = 0): void {
  const data = readFileSync(path);
  let at = -1;
  for (let i = 0; i <= nth; i++) at = data.indexOf(needle, at + 1);
  expect(at, `${needle} in ${path}`).toBeGreaterThanOrEqual(0);
  data[at] ^= 1 << bit;
  writeFileSync(path, data);
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('CRC-32', () => {
  it('is the standard CRC-32 (IEEE), as zlib and PNG use', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
  });
});

describe('a damaged journal header (review point 6)', () => {
  it('one flipped byte in one device header: that journal is moved aside (path and reason logged), it starts empty, the other device is untouched', async () => {
    const pathA = join(dir, 'dev-a.outbox');
    const pathB = join(dir, 'dev-b.outbox');
    for (const p of [pathA, pathB]) {
      const o = await DurableOutbox.open(p);
      o.enqueue(msg(`homie/5/${p.includes('dev-a') ? 'dev-a' : 'dev-b'}/x/v`, 'value-1'));
      await o.close();
    }
    flipBitOf(pathA, 'tether-outbox', 5); // 't' -> 'T'
    const damaged = readFileSync(pathA);

    const logger = new RecordingLogger();
    const a = await open(pathA, { logger });
    expect(a.size).toBe(0);
    expect(a.recovery.movedAside).toMatch(/dev-a\.outbox\.corrupt-/);
    expect(a.recovery.movedAsideReason).toBe('not a tether outbox journal (header checksum mismatch)');
    expect(readFileSync(a.recovery.movedAside!)).toEqual(damaged); // kept as it was, for a post-mortem
    const line = logger.records.find((r) => r.level === 'error')!;
    expect(line.msg).toContain(pathA);
    expect(line.msg).toContain(a.recovery.movedAside!);
    expect(line.obj).toMatchObject({ path: pathA, movedTo: a.recovery.movedAside, reason: 'not a tether outbox journal (header checksum mismatch)' });
    // It works as a fresh outbox.
    a.enqueue(msg('homie/5/dev-a/x/v', 'after'));
    await a.flush();
    expect((await open(pathA)).pending().map((e) => e.payload.toString())).toEqual(['after']);

    const b = await open(pathB);
    expect(b.pending().map((e) => e.payload.toString())).toEqual(['value-1']);
    expect(b.recovery).toEqual({ entries: 1, torn: 0, corrupt: 0 });
  });
});

describe('damaged records (review point 7)', () => {
  it('a flipped bit in a payload or a topic: the record is skipped, counted, logged with its line, never handed out', async () => {
    const path = join(dir, 'dev.outbox');
    const o = await DurableOutbox.open(path);
    o.enqueue(msg('homie/5/dev/a/v', 'value-3'));
    o.enqueue(msg('homie/5/dev/a/v', 'value-4'));
    o.enqueue(msg('homie/5/dev/b/v', 'value-5'));
    o.enqueue(msg('homie/5/dev/c/v', 'value-6'));
    await o.close();
    // 'value-4' -> 'zalue-4' ('d' -> 'e' in its base64, which decodes to 'z...'), 'homie' -> 'Homie'
    expect(b64('value-4')).toMatch(/^dmFsdWUtNA/);
    flipBitOf(path, b64('value-4'), 0); // 'd' (0x64) -> 'e' (0x65)
    expect(Buffer.from(b64('value-4').replace(/^d/, 'e'), 'base64').toString('latin1')).toMatch(/^z/);
    flipBitOf(path, 'homie/5/dev/b', 5); // 'h' -> 'H'

    const logger = new RecordingLogger();
    const r = await open(path, { logger });
    expect(r.pending().map((e) => `${e.topic}=${e.payload}`)).toEqual(['homie/5/dev/a/v=value-3', 'homie/5/dev/c/v=value-6']);
    expect(r.recovery.corrupt).toBe(2);
    const err = logger.records.find((l) => l.level === 'error')!;
    expect(err.obj).toMatchObject({ path, corrupt: 2, lines: [3, 4] });
    expect(err.msg).toMatch(/2 damaged record\(s\).*never published/);
  });

  it('a flipped bit in an ack id does not drop an undelivered entry', async () => {
    const path = join(dir, 'dev.outbox');
    const o = await DurableOutbox.open(path);
    o.enqueue(msg('t', 'one')); // id 1
    o.enqueue(msg('t', 'two')); // id 2
    o.enqueue(msg('t', 'three')); // id 3
    o.ack(3);
    await o.close();
    flipBitOf(path, '3}', 0); // {"ack":3} -> {"ack":2} (0x33 -> 0x32), its checksum unchanged
    expect(readFileSync(path, 'utf8')).toContain('{"ack":2}');

    const r = await open(path);
    // The ack record fails its checksum: entry 2 stays; entry 3 comes back (delivered twice at
    // worst: at least once, never lost).
    expect(r.pending().map((e) => e.payload.toString())).toEqual(['one', 'two', 'three']);
    expect(r.recovery.corrupt).toBe(1);
  });

  it('a zero-length journal warns, naming the file, and starts empty', async () => {
    const path = join(dir, 'dev.outbox');
    writeFileSync(path, '');
    const logger = new RecordingLogger();
    const o = await open(path, { logger });
    expect(o.size).toBe(0);
    expect(o.recovery.empty).toBe(true);
    expect(logger.records.some((r) => r.level === 'warn' && r.msg!.includes(path) && /empty \(zero bytes/.test(r.msg!))).toBe(true);
  });

  it('a version 1 journal (no checksums, older tether) is still recovered and rewritten as version 2', async () => {
    const path = join(dir, 'dev.outbox');
    writeFileSync(
      path,
      [
        '{"tether-outbox":1,"next":1}',
        `{"id":1,"at":0,"kind":"telemetry","qos":1,"retain":false,"topic":"t","payload":"${b64('a')}"}`,
        `{"id":2,"at":0,"kind":"state","qos":1,"retain":true,"topic":"s","payload":"${b64('b')}"}`,
        '{"ack":1}',
        '',
      ].join('\n'),
    );
    const o = await open(path);
    expect(o.pending().map((e) => e.payload.toString())).toEqual(['b']);
    expect(readFileSync(path, 'utf8')).toMatch(/^[0-9a-f]{8} \{"tether-outbox":2,"next":3\}\n[0-9a-f]{8} \{"id":2,/);
  });
});

describe('recovery streams the file (review point 7)', () => {
  it('reads in chunks: a journal read 7 bytes at a time gives the same records as a whole read', async () => {
    const path = join(dir, 'dev.outbox');
    const o = await DurableOutbox.open(path, { fsync: 'never' });
    for (let i = 0; i < 200; i++) o.enqueue(msg(`t/${i % 7}`, 'x'.repeat(i)));
    for (let id = 1; id <= 200; id += 3) o.ack(id);
    await o.close();
    const whole = parseJournal(readFileSync(path));
    const streamed: JournalRecord[] = [];
    const summary = await readJournal(nodeFs, path, (r) => streamed.push(r), { chunkBytes: 7 });
    expect(streamed).toEqual(whole.records);
    expect(summary).toMatchObject({ torn: 0, corrupt: 0, bytes: statSync(path).size });
  });

  it('never reads the file as one string: the outbox reads it through the fs in bounded chunks', async () => {
    const path = join(dir, 'dev.outbox');
    const w = await DurableOutbox.open(path, { fsync: 'never', maxBytes: 64 << 20 });
    for (let i = 0; i < 300; i++) w.enqueue(msg('t', 'y'.repeat(10_000)));
    await w.close();
    const reads: number[] = [];
    const io: OutboxFs = {
      ...nodeFs,
      read: async (fd, buffer, offset, length, position) => {
        reads.push(length);
        return nodeFs.read(fd, buffer, offset, length, position);
      },
    };
    const o = await open(path, { fs: io, maxBytes: 64 << 20 });
    expect(o.size).toBe(300);
    expect(statSync(path).size).toBeGreaterThan(3 << 20);
    expect(reads.length).toBeGreaterThan(3);
    expect(Math.max(...reads)).toBeLessThanOrEqual(1 << 20);
  });
});

describe('queue files are private (review point 12)', () => {
  it('the journal is created 0600 (also when it replaces a 0644 one), a directory the outbox creates 0700', async () => {
    const path = join(dir, 'sub', 'dev.outbox');
    const o = await open(path);
    o.enqueue(msg('t', 'x'));
    await o.flush();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'sub')).mode & 0o777).toBe(0o700);
    const old = join(dir, 'old.outbox');
    writeFileSync(old, '{"tether-outbox":1,"next":1}\n', { mode: 0o644 });
    await open(old);
    expect(statSync(old).mode & 0o777).toBe(0o600);
  });
});

describe('I/O off the event loop, fsync policies (review points 8, 9)', () => {
  /** An fs that counts syncs and can hold writes back. */
  function countingFs() {
    const state = { syncs: 0, holdWrites: false, held: [] as Array<() => void> };
    const io: OutboxFs = {
      ...nodeFs,
      sync: async (fd) => {
        state.syncs++;
        return nodeFs.sync(fd);
      },
      write: async (fd, buffer, offset, length) => {
        if (state.holdWrites) await new Promise<void>((resolve) => state.held.push(resolve));
        return nodeFs.write(fd, buffer, offset, length);
      },
    };
    return { io, state };
  }

  it('enqueue() and ack() return while the write is still outstanding; flush() waits for it', async () => {
    const { io, state } = countingFs();
    const path = join(dir, 'dev.outbox');
    const o = await open(path, { fs: io });
    state.holdWrites = true;
    const e = o.enqueue(msg('t', 'x')); // returns although the disk has not answered
    o.ack(e.id);
    o.enqueue(msg('t', 'y'));
    let flushed = false;
    const f = o.flush().then(() => (flushed = true));
    await new Promise((r) => setImmediate(r));
    expect(flushed).toBe(false);
    state.holdWrites = false;
    for (const release of state.held.splice(0)) release();
    await f;
    // Group commit: the three records went out in one write.
    expect(parseJournal(readFileSync(path)).records.map((r) => r.type)).toEqual(['entry', 'ack', 'entry']);
  });

  it("'always' (the default) syncs before flush() resolves; 'never' never syncs; close leaves nothing behind", async () => {
    const always = countingFs();
    const a = await open(join(dir, 'a.outbox'), { fs: always.io });
    expect(a.fsync).toBe('always');
    const before = always.state.syncs;
    for (let i = 0; i < 100; i++) a.enqueue(msg('t', String(i)));
    await a.flush();
    expect(always.state.syncs).toBeGreaterThan(before);
    expect(always.state.syncs - before).toBeLessThan(100); // batched, not one per message

    const never = countingFs();
    const n = await open(join(dir, 'n.outbox'), { fs: never.io, fsync: 'never' });
    for (let i = 0; i < 100; i++) n.enqueue(msg('t', String(i)));
    await n.flush();
    await n.close();
    expect(never.state.syncs).toBe(0);
    expect(parseJournal(readFileSync(join(dir, 'n.outbox'))).records).toHaveLength(100);
  });

  it('{ batchMs } syncs within batchMs of a write, on flush() at once, and close() clears its timer', async () => {
    const clock = new ManualClock();
    const { io, state } = countingFs();
    // No idle close: the sync timer is then the only timer the loops below wait for.
    const o = await open(join(dir, 'b.outbox'), { fs: io, clock, fsync: { batchMs: 200 }, idleCloseMs: Infinity });
    await o.compact(); // creates the journal: its syncs are not the ones counted
    const atOpen = state.syncs;
    o.enqueue(msg('t', '1'));
    // The write lands and arms the sync timer (the sync itself waits for it).
    const armed = Date.now() + 5000;
    while (clock.pending === 0 && Date.now() < armed) await new Promise((r) => setImmediate(r));
    expect(parseJournal(readFileSync(join(dir, 'b.outbox'))).records).toHaveLength(1);
    expect(state.syncs).toBe(atOpen);
    clock.advance(200);
    const deadline = Date.now() + 5000;
    while (state.syncs === atOpen && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    expect(state.syncs).toBe(atOpen + 1);
    o.enqueue(msg('t', '2'));
    await o.flush(); // no clock advance needed
    expect(state.syncs).toBeGreaterThan(atOpen + 1);
    o.enqueue(msg('t', '3'));
    await o.close();
    expect(clock.pending).toBe(0);
  });

  it("'always' syncs a new message at once, a write of acks only within 1 s, and flush() syncs written acks without waiting", async () => {
    const clock = new ManualClock();
    const { io, state } = countingFs();
    const path = join(dir, 'l.outbox');
    // No idle close: the sync timer is then the only timer the loops below wait for.
    const o = await open(path, { fs: io, clock, idleCloseMs: Infinity });
    await o.compact(); // creates the journal: its syncs are not the ones counted
    const atOpen = state.syncs;
    const e = o.enqueue(msg('t', '1'));
    // No flush(), no clock advance: the entry is synced on its own.
    const synced = Date.now() + 5000;
    while (state.syncs === atOpen && Date.now() < synced) await new Promise((r) => setImmediate(r));
    await o.flush(); // that sync has finished (and flush() added none)
    expect(state.syncs).toBe(atOpen + 1);
    o.ack(e.id);
    // The ack is written and its sync waits for the timer.
    const armed = Date.now() + 5000;
    while (clock.pending === 0 && Date.now() < armed) await new Promise((r) => setImmediate(r));
    expect(parseJournal(readFileSync(path)).records.map((r) => r.type)).toEqual(['entry', 'ack']);
    expect(state.syncs).toBe(atOpen + 1);
    clock.advance(1000);
    const later = Date.now() + 5000;
    while (state.syncs === atOpen + 1 && Date.now() < later) await new Promise((r) => setImmediate(r));
    expect(state.syncs).toBe(atOpen + 2);
    // A written ack under a pending timer: flush() syncs it at once.
    const f = o.enqueue(msg('t', '2'));
    await o.flush();
    const beforeAck = state.syncs;
    o.ack(f.id);
    while (clock.pending === 0 && Date.now() < armed + 5000) await new Promise((r) => setImmediate(r));
    await o.flush(); // would hang until clock.advance if it waited for the timer
    expect(state.syncs).toBe(beforeAck + 1);
    await o.close();
    expect(clock.pending).toBe(0);
  });

  it('rejects a bad fsync option', async () => {
    await expect(DurableOutbox.open(join(dir, 'x.outbox'), { fsync: { batchMs: 0 } })).rejects.toThrow(/fsync must be/);
    expect(existsSync(join(dir, 'x.outbox'))).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });
});
