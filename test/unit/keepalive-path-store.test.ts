import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { KeepalivePathStore, type StoredPath } from '../../host/mqtt/keepalive-path-store.ts';

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tether-paths-'));
  file = join(dir, 'keepalive-paths.json');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const entry = (intervalMs: number): StoredPath => ({ intervalMs, timeoutMs: null, updatedAt: '2026-12-01T00:00:00.000Z', learned: { version: 1, n: intervalMs } });

describe('KeepalivePathStore', () => {
  it('a read sees a write at once; a burst of writes is saved with every entry, and a new store reads them all back', async () => {
    const store = new KeepalivePathStore(file);
    for (let i = 0; i < 100; i++) store.write(`tcp://h:${i}`, entry(i));
    expect(await store.read('tcp://h:50')).toEqual(entry(50)); // before the save
    await store.flushed();
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { version: number; paths: Record<string, StoredPath> };
    expect(saved.version).toBe(1);
    expect(Object.keys(saved.paths)).toHaveLength(100);
    const again = new KeepalivePathStore(file);
    expect(await again.read('tcp://h:99')).toEqual(entry(99));
    expect(await again.read('tcp://h:100')).toBeUndefined();
  });

  it('reads the file once (10,000 bridges each read their entry at start): a change behind its back is not read again, a new store reads it', async () => {
    writeFileSync(file, JSON.stringify({ version: 1, paths: { a: entry(1) } }));
    const store = new KeepalivePathStore(file);
    expect(await store.read('a')).toEqual(entry(1));
    writeFileSync(file, JSON.stringify({ version: 1, paths: { a: entry(2) } }));
    expect(await store.read('a')).toEqual(entry(1));
    expect(await new KeepalivePathStore(file).read('a')).toEqual(entry(2));
  });

  it('keeps the other paths of the file when it writes one, and writes over an unreadable file (said once at WARN)', async () => {
    writeFileSync(file, JSON.stringify({ version: 1, paths: { other: entry(7) } }));
    const store = new KeepalivePathStore(file);
    store.write('mine', entry(3));
    await store.flushed();
    expect(JSON.parse(readFileSync(file, 'utf8')).paths).toEqual({ other: entry(7), mine: entry(3) });

    writeFileSync(file, '{ not json');
    const logger = new RecordingLogger();
    const fresh = new KeepalivePathStore(file, logger);
    expect(await fresh.read('other')).toBeUndefined();
    expect(await fresh.read('mine')).toBeUndefined();
    expect(logger.records.filter((r) => r.level === 'warn')).toHaveLength(1);
    fresh.write('mine', entry(4));
    await fresh.flushed();
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ version: 1, paths: { mine: entry(4) } });
  });
});
