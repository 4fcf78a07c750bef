/**
 * A durable, bounded queue of MQTT publishes (the "outbox"): what the daemon publishes while the
 * broker is away, or before the broker has acknowledged it, is kept here and survives a crash of
 * the daemon (kill -9), to be delivered once the broker is back (see outbox-pump.ts).
 *
 * Storage: an append-only journal file (format in outbox-journal.ts). enqueue() and ack() append
 * their record with a synchronous write on an open fd before they return, so the record is in
 * the kernel's page cache and survives the death of the process. With `fsync: true` every append
 * is also fsync'ed, so it survives power loss too (at a large cost in throughput). The journal
 * is rewritten with only the pending entries (temp file + atomic rename) on open and whenever
 * enough of it is garbage (see compact()). One process at a time may use a journal.
 *
 * Bounds (maxEntries, maxBytes: topic + payload bytes) hold for the whole queue, on disk and in
 * memory. When an entry would not fit, victims are chosen oldest first by kind:
 *   1. 'telemetry' (streaming values, superseded by the next reading),
 *   2. then 'other',
 *   3. then 'state' (retained device state) only when nothing else is left.
 * The new message takes part in that choice as the newest of its kind: a telemetry message
 * offered to a queue holding only state is itself dropped rather than displacing state (and in
 * that case nothing else is dropped for it). A message larger than maxBytes on its own is dropped
 * on arrival. Every drop is counted (`dropped`, `droppedByKind`), emitted ('drop') and logged
 * (logger.warn with topic and totals; at most one line per `dropLogIntervalMs`, then a summary
 * of the ones in between), never silent.
 *
 * Coalescing: enqueueing a retained 'state' message (retain: true) for a topic that already has a
 * pending retained 'state' message removes the older one: a broker keeps only the latest retained value,
 * so delivering the old one first is pointless. Telemetry is never coalesced: every sample is
 * delivered (subscribers may count them), even when it is published retained. The new one goes
 * to the back of the queue. This
 * is not a loss; it is counted in `coalesced` and emitted as 'coalesce', not 'drop'.
 *
 * Disk errors (ENOSPC, EIO, ...) never escape enqueue() or ack(). The message stays in memory,
 * the outbox becomes `degraded` (one logger.error per episode, a 'degraded' event) and stops
 * appending; on a later enqueue/ack (at most once per `diskRetryMs`) or compact() it tries to
 * rewrite the whole journal from memory, and on success it is back to normal ('recovered').
 * While degraded the same bounds apply; a drop made while degraded has reason 'disk-error' (the
 * entries held in memory only ran into the bound). Entries enqueued while degraded are lost if
 * the process dies before the disk recovers.
 *
 * Events: 'enqueue' (entry), 'drop' (entry, reason: 'full' | 'disk-error'),
 * 'coalesce' (older entry, newer entry), 'ack' (entry), 'degraded' (error), 'recovered' ().
 */
import { EventEmitter } from 'node:events';
import { constants as fsConstants } from 'node:fs';
import { dirname } from 'node:path';
import { silentLogger, type Logger } from '../log/logger.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import {
  encodeAck,
  encodeCoalesced,
  encodeDrop,
  encodeEntry,
  encodeHeader,
  nodeFs,
  parseJournal,
  writeAll,
  type OutboxFs,
} from './outbox-journal.ts';

/** 'state' = retained device state ($state, property values); 'telemetry' = streaming values. */
export type OutboxKind = 'telemetry' | 'state' | 'other';

export interface OutboxMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
  kind: OutboxKind;
}

export interface OutboxEntry extends OutboxMessage {
  /** Unique and increasing, also across reopening the journal. */
  id: number;
  /** Wall-clock ms since the epoch (from `wallClock`). */
  enqueuedAt: number;
}

export type DropReason = 'full' | 'disk-error';

export interface DurableOutboxOptions {
  /** Most pending entries (default 10_000). */
  maxEntries?: number;
  /** Most pending topic + payload bytes (default 16 MiB). */
  maxBytes?: number;
  logger?: Logger;
  /** Monotonic time for log rate limiting and disk retry throttling. */
  clock?: Clock;
  /** Wall time for `enqueuedAt` (default Date.now). */
  wallClock?: () => number;
  /**
   * Removals (acks, drops, coalesced) between automatic compactions (default 1000). A
   * compaction also waits until at least half of the journal is garbage, so its cost stays
   * proportional to what was appended; and it comes sooner when the garbage exceeds the live
   * part by more than 2 * maxBytes.
   */
  compactEvery?: number;
  /**
   * fsync every append and compaction (default false). Without it the journal survives a crash
   * of the process (kill -9); with it, it also survives power loss.
   */
  fsync?: boolean;
  /** While degraded, least ms between attempts to rewrite the journal (default 1000). */
  diskRetryMs?: number;
  /** Least ms between two drop warnings; drops in between are summarised (default 5000). */
  dropLogIntervalMs?: number;
  /** File operations; for tests that inject disk errors. */
  fs?: OutboxFs;
}

export interface RecoveryReport {
  /** Entries pending after replay (before any bound was enforced). */
  entries: number;
  /** 1 if the journal ended in a record cut short by a crash. */
  torn: number;
  /** Unreadable records before the last one (skipped). */
  corrupt: number;
}

const KINDS_BY_VICTIM_ORDER: readonly OutboxKind[] = ['telemetry', 'other', 'state'];

interface Slot {
  entry: OutboxEntry;
  /** topic + payload bytes, what maxBytes bounds. */
  size: number;
  /** Bytes of its journal line, for the garbage estimate. */
  lineBytes: number;
}

function entrySize(m: OutboxMessage): number {
  return Buffer.byteLength(m.topic) + m.payload.length;
}

function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

export class DurableOutbox extends EventEmitter {
  readonly path: string;
  readonly maxEntries: number;
  readonly maxBytes: number;
  /** What replay found when the journal was opened. */
  readonly recovery: RecoveryReport = { entries: 0, torn: 0, corrupt: 0 };

  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly wallClock: () => number;
  private readonly compactEvery: number;
  private readonly fsyncEach: boolean;
  private readonly diskRetryMs: number;
  private readonly dropLogIntervalMs: number;
  private readonly io: OutboxFs;

  /** Pending entries by id, in id (= enqueue) order. */
  private readonly slots = new Map<number, Slot>();
  /** The same slots split by kind, each in id order, to find victims without scanning. */
  private readonly byKind: Record<OutboxKind, Map<number, Slot>> = {
    telemetry: new Map(),
    state: new Map(),
    other: new Map(),
  };
  /** Topic -> its pending retained slot. */
  private readonly retainedByTopic = new Map<string, Slot>();
  private nextId = 1;
  private totalBytes = 0;
  private liveLineBytes = 0;
  private droppedCount = 0;
  private readonly droppedKinds: Record<OutboxKind, number> = { telemetry: 0, state: 0, other: 0 };
  private coalescedCount = 0;

  private fd: number | undefined;
  private journalBytes = 0;
  private removalsSinceCompact = 0;
  private isDegraded = false;
  private lastRepairAt = -Infinity;
  private diskErrorCount = 0;
  private closed = false;

  private dropLogOpenUntil = -Infinity;
  private dropLogTimer: TimerHandle | undefined;
  private suppressedDrops = 0;
  private lastSuppressed: { topic: string; kind: OutboxKind; reason: DropReason } | undefined;

  private constructor(path: string, options: DurableOutboxOptions) {
    super();
    this.path = path;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.maxBytes = options.maxBytes ?? 16 * 1024 * 1024;
    this.compactEvery = options.compactEvery ?? 1000;
    this.diskRetryMs = options.diskRetryMs ?? 1000;
    this.dropLogIntervalMs = options.dropLogIntervalMs ?? 5000;
    for (const [name, v, min] of [
      ['maxEntries', this.maxEntries, 1],
      ['maxBytes', this.maxBytes, 1],
      ['compactEvery', this.compactEvery, 1],
      ['diskRetryMs', this.diskRetryMs, 0],
      ['dropLogIntervalMs', this.dropLogIntervalMs, 0],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${v}`);
    }
    this.logger = (options.logger ?? silentLogger).child({ component: 'outbox' });
    this.clock = options.clock ?? systemClock;
    this.wallClock = options.wallClock ?? Date.now;
    this.fsyncEach = options.fsync ?? false;
    this.io = options.fs ?? nodeFs;
  }

  /**
   * Opens the journal at `path`, creating it (and its directory) if missing, else replaying it:
   * the outbox then holds exactly the entries that were enqueued and not acked, dropped or
   * coalesced, in their order and with their ids. A torn last record (crash mid-write) is
   * ignored and logged. The journal is then rewritten compactly; if that fails the outbox starts
   * degraded (see the file comment). Rejects only when the file cannot be read (other than
   * missing) or is not an outbox journal of a known version, so that it is never overwritten.
   */
  static async open(path: string, options: DurableOutboxOptions = {}): Promise<DurableOutbox> {
    const outbox = new DurableOutbox(path, options);
    outbox.recover();
    return outbox;
  }

  /** Pending entries. */
  get size(): number {
    return this.slots.size;
  }

  /** Pending topic + payload bytes. */
  get bytes(): number {
    return this.totalBytes;
  }

  /** Entries dropped by the overflow policy since open (not counting coalesced ones). */
  get dropped(): number {
    return this.droppedCount;
  }

  get droppedByKind(): Record<OutboxKind, number> {
    return { ...this.droppedKinds };
  }

  /** Retained entries replaced by a newer retained value for the same topic since open. */
  get coalesced(): number {
    return this.coalescedCount;
  }

  /** True while the journal cannot be written and the newest state lives only in memory. */
  get degraded(): boolean {
    return this.isDegraded;
  }

  /** Failed journal writes (appends and rewrites) since open. */
  get diskErrors(): number {
    return this.diskErrorCount;
  }

  has(id: number): boolean {
    return this.slots.has(id);
  }

  /**
   * Queues `message` and returns its entry. The journal record is written before this returns
   * (unless the disk fails: then the entry is held in memory, see the file comment). May drop
   * older entries, or this one, to stay within bounds; may replace an older retained value.
   * Never throws for disk errors; throws for invalid messages or after close().
   */
  enqueue(message: OutboxMessage): OutboxEntry {
    if (this.closed) throw new Error('DurableOutbox is closed');
    validate(message);
    const entry: OutboxEntry = Object.freeze({
      id: this.nextId++,
      enqueuedAt: this.wallClock(),
      topic: message.topic,
      payload: Buffer.from(message.payload),
      qos: message.qos,
      retain: message.retain,
      kind: message.kind,
    });
    const line = encodeEntry(entry);
    const slot: Slot = { entry, size: entrySize(entry), lineBytes: Buffer.byteLength(line) + 1 };
    const reason: DropReason = this.isDegraded ? 'disk-error' : 'full';

    const replaced = coalesces(entry) ? this.retainedByTopic.get(entry.topic) : undefined;
    const plan = this.planVictims(slot, replaced);
    if (plan === 'drop-new') {
      // Journal the id only, so that ids keep increasing across a reopen.
      this.journal([encodeDrop(entry.id, reason)]);
      this.noteDrop(entry, reason);
      return entry;
    }
    const lines: string[] = [];
    if (replaced) {
      this.remove(replaced);
      lines.push(encodeCoalesced(replaced.entry.id, entry.id));
    }
    for (const victim of plan) {
      this.remove(victim);
      lines.push(encodeDrop(victim.entry.id, reason));
    }
    this.insert(slot);
    lines.push(line);
    this.journal(lines);

    if (replaced) {
      this.coalescedCount++;
      this.logger.debug({ topic: entry.topic, replaced: replaced.entry.id, by: entry.id }, 'outbox: retained value superseded');
      this.emit('coalesce', replaced.entry, entry);
    }
    for (const victim of plan) this.noteDrop(victim.entry, reason);
    this.emit('enqueue', entry);
    this.maybeCompact();
    return entry;
  }

  /**
   * Pending entries, oldest first, at most `limit` (default all). Entries handed to a publisher
   * and not yet acked are still pending: the caller (OutboxPump) tracks what it has in flight.
   * The entries are frozen; do not modify their payloads.
   */
  pending(limit = Infinity): OutboxEntry[] {
    const out: OutboxEntry[] = [];
    if (limit <= 0) return out;
    for (const slot of this.slots.values()) {
      out.push(slot.entry);
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Marks entry `id` delivered: it is no longer pending. Idempotent; unknown ids are ignored. */
  ack(id: number): void {
    const slot = this.slots.get(id);
    if (!slot) return;
    this.remove(slot);
    this.journal([encodeAck(id)]);
    this.emit('ack', slot.entry);
    this.maybeCompact();
  }

  /**
   * Rewrites the journal with only the pending entries (temp file, then an atomic rename over
   * the journal). Also the way back from degraded. Never throws; on failure the old journal is
   * kept (and stays in use if it was healthy).
   */
  compact(): void {
    if (this.closed) return;
    this.rewrite();
  }

  /** Writes what is left to write (a last repair attempt if degraded) and closes the journal. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.isDegraded) this.rewrite();
    this.closed = true;
    this.flushDropLog();
    if (this.fd !== undefined) {
      const fd = this.fd;
      this.fd = undefined;
      try {
        if (this.fsyncEach) this.io.fsyncSync(fd);
      } catch {
        // Reported by the appends already, if at all.
      }
      try {
        this.io.closeSync(fd);
      } catch {
        // Nothing left to do with it.
      }
    }
  }

  // ---- queue bookkeeping ----

  private insert(slot: Slot): void {
    const { entry } = slot;
    this.slots.set(entry.id, slot);
    this.byKind[entry.kind].set(entry.id, slot);
    if (coalesces(entry)) this.retainedByTopic.set(entry.topic, slot);
    this.totalBytes += slot.size;
    this.liveLineBytes += slot.lineBytes;
  }

  private remove(slot: Slot): void {
    const { entry } = slot;
    this.slots.delete(entry.id);
    this.byKind[entry.kind].delete(entry.id);
    if (this.retainedByTopic.get(entry.topic) === slot) this.retainedByTopic.delete(entry.topic);
    this.totalBytes -= slot.size;
    this.liveLineBytes -= slot.lineBytes;
    this.removalsSinceCompact++;
  }

  /**
   * The queued slots to drop so that `incoming` fits (after removing `replaced`), or
   * 'drop-new' when the incoming message is itself the victim.
   */
  private planVictims(incoming: Slot, replaced: Slot | undefined): Slot[] | 'drop-new' {
    if (incoming.size > this.maxBytes) return 'drop-new';
    let count = this.slots.size + 1 - (replaced ? 1 : 0);
    let bytes = this.totalBytes + incoming.size - (replaced?.size ?? 0);
    const over = () => count > this.maxEntries || bytes > this.maxBytes;
    const victims: Slot[] = [];
    for (const kind of KINDS_BY_VICTIM_ORDER) {
      if (!over()) break;
      for (const slot of this.byKind[kind].values()) {
        if (slot === replaced) continue;
        victims.push(slot);
        count--;
        bytes -= slot.size;
        if (!over()) break;
      }
      // Every older entry of this kind is gone and it still does not fit: the incoming one is
      // the next oldest of its kind, and dropping it alone is enough.
      if (over() && incoming.entry.kind === kind) return 'drop-new';
    }
    return victims;
  }

  private noteDrop(entry: OutboxEntry, reason: DropReason): void {
    this.droppedCount++;
    this.droppedKinds[entry.kind]++;
    this.emit('drop', entry, reason);
    const now = this.clock.now();
    if (now >= this.dropLogOpenUntil) {
      this.logDrop(entry.topic, entry.kind, reason, 0);
      this.dropLogOpenUntil = now + this.dropLogIntervalMs;
      return;
    }
    this.suppressedDrops++;
    this.lastSuppressed = { topic: entry.topic, kind: entry.kind, reason };
    if (this.dropLogTimer === undefined) {
      this.dropLogTimer = this.clock.setTimeout(() => {
        this.dropLogTimer = undefined;
        this.flushDropLog();
      }, Math.max(0, this.dropLogOpenUntil - now));
      (this.dropLogTimer as { unref?: () => void }).unref?.();
    }
  }

  /** Logs the summary of drops the rate limit held back, if any. */
  private flushDropLog(): void {
    if (this.dropLogTimer !== undefined) {
      this.clock.clearTimeout(this.dropLogTimer);
      this.dropLogTimer = undefined;
    }
    if (this.suppressedDrops === 0 || !this.lastSuppressed) return;
    const { topic, kind, reason } = this.lastSuppressed;
    const n = this.suppressedDrops;
    this.suppressedDrops = 0;
    this.lastSuppressed = undefined;
    this.logDrop(topic, kind, reason, n);
    this.dropLogOpenUntil = this.clock.now() + this.dropLogIntervalMs;
  }

  private logDrop(topic: string, kind: OutboxKind, reason: DropReason, more: number): void {
    const fields = {
      topic,
      kind,
      reason,
      dropped: this.droppedCount,
      droppedByKind: { ...this.droppedKinds },
      pending: this.slots.size,
      bytes: this.totalBytes,
      ...(more > 0 ? { droppedSinceLastLog: more } : {}),
    };
    const why = reason === 'disk-error' ? 'outbox full while the journal is unwritable' : 'outbox full';
    this.logger.warn(
      fields,
      more > 0 ? `${why}: dropped ${more} more message(s), last ${kind} on ${topic}` : `${why}: dropped oldest ${kind} message`,
    );
  }

  // ---- journal ----

  /**
   * Appends `lines` (one write, so a crash tears at most the last of them). On failure the
   * outbox becomes degraded; while degraded, nothing is appended (the file may end in a partial
   * line) and the whole journal is rewritten from memory instead, at most once per diskRetryMs.
   */
  private journal(lines: string[]): void {
    if (this.isDegraded || this.fd === undefined) {
      if (this.clock.now() - this.lastRepairAt >= this.diskRetryMs) this.rewrite();
      return;
    }
    const buffer = Buffer.from(lines.join('\n') + '\n');
    try {
      writeAll(this.io, this.fd, buffer);
      if (this.fsyncEach) this.io.fsyncSync(this.fd);
      this.journalBytes += buffer.length;
    } catch (err) {
      this.enterDegraded(err);
    }
  }

  private enterDegraded(err: unknown): void {
    this.diskErrorCount++;
    this.lastRepairAt = this.clock.now();
    if (this.isDegraded) return;
    this.isDegraded = true;
    this.logger.error(
      { err, code: errorCode(err), path: this.path, pending: this.slots.size },
      'outbox journal write failed: keeping messages in memory until the disk recovers',
    );
    this.emit('degraded', err);
  }

  /**
   * Compacts after compactEvery removals once garbage >= live (so the rewrite costs no more
   * than what was appended), or whenever garbage exceeds live + 2 * maxBytes (a few huge
   * entries churning): the journal stays within a few times maxBytes.
   */
  private maybeCompact(): void {
    if (this.isDegraded) return;
    const garbage = this.journalBytes - this.liveLineBytes;
    const due =
      (this.removalsSinceCompact >= this.compactEvery && garbage >= this.liveLineBytes) ||
      garbage >= this.liveLineBytes + 2 * this.maxBytes;
    if (due) this.rewrite();
  }

  /** Writes header + pending entries to a temp file and renames it over the journal. */
  private rewrite(): boolean {
    const tmp = `${this.path}.compact`;
    let fd: number | undefined;
    try {
      this.io.mkdirSync(dirname(this.path), { recursive: true });
      fd = this.io.openSync(
        tmp,
        fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_APPEND,
        0o644,
      );
      let written = 0;
      let chunk: string[] = [encodeHeader(this.nextId)];
      let chunkLength = 0;
      const flush = () => {
        const buffer = Buffer.from(chunk.join('\n') + '\n');
        writeAll(this.io, fd!, buffer);
        written += buffer.length;
        chunk = [];
        chunkLength = 0;
      };
      for (const slot of this.slots.values()) {
        const line = encodeEntry(slot.entry);
        chunk.push(line);
        chunkLength += line.length;
        if (chunkLength >= 1 << 20) flush();
      }
      if (chunk.length > 0) flush();
      if (this.fsyncEach) this.io.fsyncSync(fd);
      this.io.renameSync(tmp, this.path);
      if (this.fsyncEach) this.syncDirectory();
      const old = this.fd;
      this.fd = fd;
      fd = undefined;
      this.journalBytes = written;
      this.removalsSinceCompact = 0;
      if (old !== undefined) {
        try {
          this.io.closeSync(old);
        } catch {
          // The old journal is replaced either way.
        }
      }
      if (this.isDegraded) {
        this.isDegraded = false;
        this.logger.info({ path: this.path, pending: this.slots.size }, 'outbox journal writable again');
        this.emit('recovered');
      }
      return true;
    } catch (err) {
      if (fd !== undefined) {
        try {
          this.io.closeSync(fd);
        } catch {
          // Already failing.
        }
        try {
          this.io.unlinkSync(tmp);
        } catch {
          // Left for the next rewrite to truncate.
        }
      }
      if (this.isDegraded || this.fd === undefined) {
        this.enterDegraded(err);
      } else {
        // The old journal is intact and still appended to: nothing is at risk.
        this.diskErrorCount++;
        this.logger.warn({ err, code: errorCode(err), path: this.path }, 'outbox journal compaction failed');
      }
      return false;
    }
  }

  private syncDirectory(): void {
    try {
      const dirFd = this.io.openSync(dirname(this.path), fsConstants.O_RDONLY);
      try {
        this.io.fsyncSync(dirFd);
      } finally {
        this.io.closeSync(dirFd);
      }
    } catch {
      // Some filesystems refuse fsync on a directory; the rename is still atomic.
    }
  }

  // ---- recovery ----

  private recover(): void {
    let data: Buffer | undefined;
    try {
      data = this.io.readFileSync(this.path);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
    }
    if (data !== undefined) {
      const parsed = parseJournal(data);
      let maxId = parsed.headerNext - 1;
      for (const record of parsed.records) {
        switch (record.type) {
          case 'entry': {
            const { entry } = record;
            maxId = Math.max(maxId, entry.id);
            if (this.slots.has(entry.id)) {
              parsed.corrupt++;
              continue;
            }
            const slot: Slot = {
              entry: Object.freeze(entry),
              size: entrySize(entry),
              lineBytes: Buffer.byteLength(encodeEntry(entry)) + 1,
            };
            this.insert(slot);
            break;
          }
          case 'ack':
          case 'drop':
          case 'coalesced': {
            maxId = Math.max(maxId, record.id, record.type === 'coalesced' ? record.by : 0);
            const slot = this.slots.get(record.id);
            if (slot) this.remove(slot);
            break;
          }
        }
      }
      this.nextId = maxId + 1;
      Object.assign(this.recovery, { entries: this.slots.size, torn: parsed.torn, corrupt: parsed.corrupt });
      if (parsed.torn) {
        this.logger.warn({ path: this.path }, 'outbox journal ended in a torn record (crash mid-write); ignored it');
      }
      if (parsed.corrupt) {
        this.logger.error(
          { path: this.path, corrupt: parsed.corrupt, lines: parsed.corruptLines },
          'outbox journal had unreadable records; skipped them',
        );
      }
      this.logger.info(
        { path: this.path, pending: this.slots.size, bytes: this.totalBytes, nextId: this.nextId },
        'outbox recovered',
      );
    }
    this.enforceBoundsAfterReplay();
    this.rewrite();
  }

  /** The bounds may have shrunk since the journal was written. */
  private enforceBoundsAfterReplay(): void {
    const over = () => this.slots.size > this.maxEntries || this.totalBytes > this.maxBytes;
    for (const kind of KINDS_BY_VICTIM_ORDER) {
      for (const slot of this.byKind[kind].values()) {
        if (!over()) return;
        this.remove(slot);
        this.noteDrop(slot.entry, 'full');
      }
    }
  }
}

function validate(m: OutboxMessage): void {
  if (typeof m.topic !== 'string' || m.topic === '') throw new TypeError('topic must be a non-empty string');
  if (!Buffer.isBuffer(m.payload)) throw new TypeError('payload must be a Buffer');
  if (m.qos !== 0 && m.qos !== 1) throw new TypeError(`qos must be 0 or 1, got ${String(m.qos)}`);
  if (typeof m.retain !== 'boolean') throw new TypeError('retain must be a boolean');
  if (m.kind !== 'telemetry' && m.kind !== 'state' && m.kind !== 'other') {
    throw new TypeError(`kind must be telemetry, state or other, got ${String(m.kind)}`);
  }
}

/** Only retained device state is coalesced (see the header). */
function coalesces(entry: OutboxMessage): boolean {
  return entry.retain && entry.kind === 'state';
}
