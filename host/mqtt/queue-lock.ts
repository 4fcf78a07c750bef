/**
 * One daemon per queue directory. Two daemons on one `queue.dir` lose entries (both append to
 * and compact the same journals), hand out ids twice, kick each other's MQTT sessions (same
 * client ids) and delete each other's control socket. `lockQueueDir()` takes an exclusive lock
 * on the directory before any of that starts, and refuses with one line naming the holder.
 *
 * The lock is proper-lockfile's: a directory `<dir>/daemon.lock` made with mkdir (atomic, also
 * on network filesystems), its mtime refreshed every `updateMs` while held; a lock not
 * refreshed for `staleMs` is stale and may be taken over. Who holds it is written next to it,
 * in `<dir>/daemon.lock.owner` (pid, host, start time), for the refusal message. A lock left
 * by a daemon killed with kill -9 on this host (its pid is gone) is taken over as soon as it
 * is 2 s old, so a restart waits at most about that long.
 *
 * The queue directory is created 0700 when it does not exist (journals hold message payloads).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { silentLogger, type Logger } from '../log/logger.ts';

export interface QueueLockOwner {
  pid: number;
  host: string;
  /** ISO time the owner took the lock. */
  since: string;
}

export interface QueueLock {
  readonly dir: string;
  /** Gives the lock up (idempotent). Also happens by itself when the process exits. */
  release(): Promise<void>;
}

export class QueueLockedError extends Error {
  override name = 'QueueLockedError';
  constructor(
    readonly dir: string,
    readonly owner: QueueLockOwner | undefined,
  ) {
    super(
      owner
        ? `queue directory ${dir} is in use by another tether daemon (pid ${owner.pid} on ${owner.host}, since ${owner.since}): stop it, or give this one another queue.dir`
        : `queue directory ${dir} is in use by another tether daemon (its lock ${join(dir, 'daemon.lock')} is held): stop it, or give this one another queue.dir`,
    );
  }
}

export interface QueueLockOptions {
  logger?: Logger;
  /** A lock not refreshed for this long may be taken over (default 10 s; at least 2 s). */
  staleMs?: number;
  /** How often the held lock is refreshed (default 1 s; at most staleMs / 2). */
  updateMs?: number;
  /**
   * Called when the lock was lost while held (it could not be refreshed within staleMs, e.g.
   * the event loop was stalled that long, or someone removed it). Default: log an error.
   */
  onCompromised?: (err: Error) => void;
}

const LOCK_NAME = 'daemon.lock';
const OWNER_NAME = 'daemon.lock.owner';
/** proper-lockfile's least staleness: a dead owner's lock is taken over once this old. */
const DEAD_OWNER_STALE_MS = 2000;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

async function readOwner(dir: string): Promise<QueueLockOwner | undefined> {
  try {
    const owner = JSON.parse(await readFile(join(dir, OWNER_NAME), 'utf8')) as QueueLockOwner;
    return Number.isSafeInteger(owner.pid) && typeof owner.host === 'string' ? owner : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the exclusive lock on `dir` (created 0700 if missing). Rejects with QueueLockedError
 * when another live process holds it.
 */
export async function lockQueueDir(dir: string, options: QueueLockOptions = {}): Promise<QueueLock> {
  const logger = options.logger ?? silentLogger;
  const staleMs = Math.max(options.staleMs ?? 10_000, DEAD_OWNER_STALE_MS);
  const updateMs = Math.min(options.updateMs ?? 1000, staleMs / 2);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const lockfilePath = join(dir, LOCK_NAME);
  const onCompromised =
    options.onCompromised ??
    ((err: Error) => logger.error({ err: err.message, dir }, `lost the lock on queue directory ${dir}: another daemon may take it over`));
  const attempt = (stale: number, retries: number) =>
    lockfile.lock(dir, {
      lockfilePath,
      realpath: false,
      stale,
      update: updateMs,
      retries: retries > 0 ? { retries, factor: 1, minTimeout: 250, maxTimeout: 250 } : 0,
      onCompromised,
    });

  let release: () => Promise<void>;
  try {
    release = await attempt(staleMs, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
    const owner = await readOwner(dir);
    if (!owner || owner.host !== hostname() || pidAlive(owner.pid) || owner.pid === process.pid) {
      throw new QueueLockedError(dir, owner);
    }
    // Left by a daemon that died without releasing it (kill -9): it stopped refreshing the
    // lock when it died, so the lock goes stale within DEAD_OWNER_STALE_MS.
    logger.warn({ dir, pid: owner.pid }, `queue directory ${dir} was locked by pid ${owner.pid}, which is gone: taking the lock over`);
    try {
      release = await attempt(DEAD_OWNER_STALE_MS, Math.ceil((DEAD_OWNER_STALE_MS + updateMs) / 250) + 4);
    } catch (again) {
      if ((again as NodeJS.ErrnoException).code !== 'ELOCKED') throw again;
      throw new QueueLockedError(dir, await readOwner(dir));
    }
  }
  const owner: QueueLockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  await writeFile(join(dir, OWNER_NAME), JSON.stringify(owner) + '\n', { mode: 0o600 });
  let released = false;
  return {
    dir,
    async release() {
      if (released) return;
      released = true;
      await rm(join(dir, OWNER_NAME), { force: true });
      await release().catch(() => {}); // already released (compromised): nothing left to give up
    },
  };
}
