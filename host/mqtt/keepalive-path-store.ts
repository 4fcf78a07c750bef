import { readFile, rename, writeFile } from 'node:fs/promises';
import { silentLogger, type Logger } from '../log/logger.ts';

/** One path's entry in the file: a few facts for people, and `learned` (the learner's own snapshot) for the next start. */
export interface StoredPath {
  intervalMs: number;
  timeoutMs: number | null;
  updatedAt: string;
  learned: unknown;
  [fact: string]: unknown;
}

/**
 * What was learned about each path (broker URLs and tcp:// bridges), kept in one JSON file
 * (`<queue.dir>/keepalive-paths.json`) so that a restart starts from it. One store per file:
 * the broker leg and every bridge write through it, so none overwrites another's path. The
 * file is read once (the first read or write) and then kept in memory: every bridge reads its
 * entry at start, and 10,000 bridges each reading and parsing the whole file was ~1 s of the
 * event loop at start (issue 15). Writes are atomic (rename), mode 0600; writes asked for while
 * one is under way go out together in the next.
 */
export class KeepalivePathStore {
  private saving: Promise<void> = Promise.resolve();
  private readonly log: Logger;
  /** The file as read (or a fresh one), once. */
  private loaded: Promise<{ version: number; paths: Record<string, unknown> }> | null = null;
  /** Entries written and not saved yet (a read sees them at once). */
  private readonly updates = new Map<string, StoredPath>();
  private saveQueued = false;

  constructor(
    readonly file: string,
    logger: Logger = silentLogger,
  ) {
    this.log = logger;
  }

  /** The entry stored for `key`, or undefined (absent file, no entry, unreadable: said once at WARN). */
  async read(key: string): Promise<StoredPath | undefined> {
    const all = await this.load();
    return this.updates.get(key) ?? (all.paths[key] as StoredPath | undefined);
  }

  /** Replaces the entry for `key`, the other paths kept. */
  write(key: string, entry: StoredPath): void {
    this.updates.set(key, entry);
    if (this.saveQueued) return; // the save queued already takes it
    this.saveQueued = true;
    const file = this.file;
    this.saving = this.saving.then(async () => {
      this.saveQueued = false;
      const all = await this.load();
      for (const [k, e] of this.updates) all.paths[k] = e;
      this.updates.clear();
      try {
        const tmp = `${file}.tmp`;
        await writeFile(tmp, `${JSON.stringify(all, null, 2)}\n`, { mode: 0o600 });
        await rename(tmp, file);
      } catch (err) {
        this.log.warn({ file, err: (err as Error).message }, 'could not store what was learned about a keepalive path');
      }
    });
  }

  /** Waits for the writes asked for so far. */
  async flushed(): Promise<void> {
    await this.saving;
  }

  private load(): Promise<{ version: number; paths: Record<string, unknown> }> {
    this.loaded ??= (async () => {
      try {
        const read = JSON.parse(await readFile(this.file, 'utf8'));
        if (read && typeof read === 'object' && read.paths && typeof read.paths === 'object') return read;
        this.log.warn({ file: this.file }, 'could not read what was learned about the keepalive paths (no paths in it): starting afresh');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file: this.file, err: (err as Error).message }, 'could not read what was learned about the keepalive paths: starting afresh');
      }
      return { version: 1, paths: {} };
    })();
    return this.loaded;
  }
}
