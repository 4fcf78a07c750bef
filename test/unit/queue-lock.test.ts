import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockQueueDir, QueueLockedError, type QueueLock } from '../../host/mqtt/queue-lock.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';

let root: string;
const held: QueueLock[] = [];
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'tether-qlock-'));
});
afterEach(async () => {
  for (const l of held.splice(0)) await l.release();
  rmSync(root, { recursive: true, force: true });
});

describe('lockQueueDir (review point 10)', () => {
  it('creates a missing queue directory 0700 and takes the lock', async () => {
    const dir = join(root, 'a', 'queue');
    held.push(await lockQueueDir(dir));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(existsSync(join(dir, 'daemon.lock'))).toBe(true);
  });

  it('a second lock on the same directory is refused with one line naming the holder; free again after release', async () => {
    const dir = join(root, 'q');
    const first = await lockQueueDir(dir);
    held.push(first);
    const err = await lockQueueDir(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QueueLockedError);
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    expect(message).toContain(`pid ${process.pid} on ${hostname()}`);
    expect(message).toContain(dir);
    await first.release();
    held.push(await lockQueueDir(dir));
  });

  it('takes over, within a few seconds, a lock left by a process that died without releasing it', async () => {
    const dir = join(root, 'q');
    mkdirSync(dir);
    // A pid that is certainly gone: a child that already exited.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    mkdirSync(join(dir, 'daemon.lock'));
    writeFileSync(join(dir, 'daemon.lock.owner'), JSON.stringify({ pid: dead, host: hostname(), since: new Date().toISOString() }));
    const logger = new RecordingLogger();
    const started = Date.now();
    held.push(await lockQueueDir(dir, { logger }));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(logger.records.some((r) => r.level === 'warn' && new RegExp(`pid ${dead}, which is gone`).test(r.msg ?? ''))).toBe(true);
  });

  it('does not take over a fresh lock whose owner is unknown', async () => {
    const dir = join(root, 'q');
    mkdirSync(dir);
    mkdirSync(join(dir, 'daemon.lock'));
    const now = new Date();
    utimesSync(join(dir, 'daemon.lock'), now, now);
    await expect(lockQueueDir(dir)).rejects.toThrow(/is in use by another tether daemon \(its lock .*daemon\.lock is held\)/);
  });
});
