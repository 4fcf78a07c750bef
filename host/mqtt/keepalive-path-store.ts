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
 * the broker leg and every bridge write through it, so their read-modify-writes are
 * serialized and none overwrites another's path. Writes are atomic (rename), mode 0600.
 */
export class KeepalivePathStore {
  private saving: Promise<void> = Promise.resolve();
  private readonly log: Logger;

  constructor(
    readonly file: string,
    logger: Logger = silentLogger,
  ) {
    this.log = logger;
  }

  /** The entry stored for `key`, or undefined (absent file, no entry, unreadable: said once at WARN). */
  async read(key: string): Promise<StoredPath | undefined> {
    await this.saving;
    try {
      const all = JSON.parse(await readFile(this.file, 'utf8')) as { paths?: Record<string, StoredPath> };
      return all.paths?.[key];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file: this.file, err: (err as Error).message }, 'could not read what was learned about the keepalive paths: starting afresh');
      return undefined;
    }
  }

  /** Replaces the entry for `key`, the other paths kept. */
  write(key: string, entry: StoredPath): void {
    const file = this.file;
    this.saving = this.saving.then(async () => {
      try {
        let all: { version: number; paths: Record<string, unknown> } = { version: 1, paths: {} };
        try {
          const read = JSON.parse(await readFile(file, 'utf8'));
          if (read && typeof read === 'object' && read.paths && typeof read.paths === 'object') all = read;
        } catch {
          // absent or unreadable: rewritten
        }
        all.paths[key] = entry;
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
}
