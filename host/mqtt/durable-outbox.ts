/**
 * A durable, bounded queue of MQTT publishes (the "outbox"): what the daemon publishes while the
 * broker is away, or before the broker has acknowledged it, is kept here and survives a crash of
 * the daemon (kill -9), to be delivered once the broker is back (see outbox-pump.ts).
 *
 * Storage: an append-only journal file (format in outbox-journal.ts, every record with a
 * CRC-32). No journal I/O runs on the event loop: enqueue() and ack() change the queue in memory
 * and hand their record to a writer that appends whatever has accumulated in one asynchronous
 * write as soon as the previous write is done (group commit), so a burst costs one write, not
 * one per message, and a slow disk never stalls the process's timers. `flush()` resolves once
 * everything enqueued or acked before it is written (and synced, unless `fsync: 'never'`).
 * What a crash can lose, by `fsync` policy:
 *   - a kill -9 of the process: only records still waiting for their write (at most one write's
 *     latency, well under a millisecond on an idle disk); whatever flush() confirmed is kept;
 *   - a power loss: 'always' (the default) syncs every write holding a new message (or a drop)
 *     at once, and one holding only acks within ACK_SYNC_MS (a lost ack only means a message
 *     delivered once more), and all of it before flush() resolves, so nothing flush() confirmed; { batchMs } syncs within batchMs of a write, so at most that
 *     window; 'never' leaves it to the kernel (Linux writes dirty pages back within ~30 s).
 * The journal is rewritten with only the pending entries (temp file + atomic rename, synced
 * unless 'never') whenever enough of it is garbage (see compact()), also off the event loop; at
 * open only when it is damaged, of version 1, or mostly garbage (a clean one is appended to as
 * it is). A missing journal is created by the first record that has to be written, not at
 * open; messages sent with `durable: false` (OutboxMessage) are never written at all. Files are created 0600, a directory the outbox creates 0700. One process at a
 * time may use a journal (the daemon locks its queue directory: queue-lock.ts).
 *
 * Damage: a record whose checksum does not match (a flipped bit, a zeroed block) is skipped,
 * counted (`recovery.corrupt`) and logged with its line number, never published or applied. A
 * journal whose header is unreadable (or of an unknown version) is moved aside to
 * `<path>.corrupt-<time>` (logged with both paths and the reason, `recovery.movedAside`), and
 * the outbox starts empty: one damaged file never keeps the others, or the daemon, down.
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
 * Disk errors (ENOSPC, EIO, a failed fsync, ...) never escape enqueue(), ack(), flush() or
 * close(). The message stays in memory, the outbox becomes `degraded` (one logger.error per
 * episode, a 'degraded' event) and stops appending; on a later enqueue/ack (at most once per
 * `diskRetryMs`) or compact() it tries to rewrite the whole journal from memory, and on
 * success it is back to normal ('recovered').
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
import type { JournalFdPool } from './journal-fd-pool.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import {
  encodeAck,
  encodeCoalesced,
  encodeDrop,
  encodeEntry,
  encodeHeader,
  JournalFormatError,
  nodeFs,
  readJournal,
  writeAll,
  type JournalRecord,
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
  /**
   * false: kept in memory only, never journaled (default true). For messages their publisher
   * sends again, with the current value, after every broker (re)connect and so after a restart
   * (Homie `$state`, `$description`, the keepalive facts): such an entry is queued, bounded,
   * coalesced and delivered like any other while the process lives, but a crash forgets it
   * (the restarted daemon publishes the current value instead) and it costs no disk I/O. Its
   * id is unique within the run only (it never reaches the journal).
   */
  durable?: boolean;
}

export interface OutboxEntry extends OutboxMessage {
  /** Unique and increasing, also across reopening the journal. */
  id: number;
  /** Wall-clock ms since the epoch (from `wallClock`). */
  enqueuedAt: number;
}

export type DropReason = 'full' | 'disk-error';

/** See DurableOutboxOptions.fsync. */
export type FsyncPolicy = 'always' | 'never' | { batchMs: number };

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
   * When the journal is synced to the disk (fdatasync), see the file comment: 'always' (the
   * default) every write and compaction, before flush() resolves; { batchMs } at most batchMs
   * after a write (and on flush() and close()); 'never' leaves it to the kernel. `true` and
   * `false` mean 'always' and 'never'.
   */
  fsync?: FsyncPolicy | boolean;
  /** While degraded, least ms between attempts to rewrite the journal (default 1000). */
  diskRetryMs?: number;
  /**
   * The journal's file descriptor is closed once the journal has been idle (everything written
   * and synced, nothing under way) for this many ms, and opened again (append) for the next
   * write (default 1000; Infinity keeps it open). A daemon with thousands of boards that rarely
   * publish then holds no descriptor per board for their outboxes.
   */
  idleCloseMs?: number;
  /**
   * Shared by the outboxes of a daemon: at most this many journals hold a descriptor at once
   * (journal-fd-pool.ts). A journal waiting for one delays its write, never drops it.
   */
  fdPool?: JournalFdPool;
  /** Least ms between two drop warnings; drops in between are summarised (default 5000). */
  dropLogIntervalMs?: number;
  /**
   * The caller has just listed the journal's directory, under the queue lock (nothing else
   * creates the file meanwhile), and it was not there: open() then does not try to read it and
   * starts an empty outbox, exactly as for a missing journal. At start-up nearly every board's
   * journal is missing, and each failed open is a trip through libuv's thread pool (5,000 of
   * them in a 5,000-board start). Only the journal itself matters: recovery never reads the
   * rewrite's `.compact` temp file or a moved-aside `.corrupt-*` one. Default false.
   */
  knownAbsent?: boolean;
  /** File operations; for tests that inject disk errors. */
  fs?: OutboxFs;
}

export interface RecoveryReport {
  /** Entries pending after replay (before any bound was enforced). */
  entries: number;
  /** 1 if the journal ended in a record cut short by a crash. */
  torn: number;
  /** Records before the last one that failed their checksum or could not be read (skipped). */
  corrupt: number;
  /** Set when the journal was unreadable as a whole: where it was moved. */
  movedAside?: string;
  /** Why it was moved aside. */
  movedAsideReason?: string;
  /** Set when the journal existed but was zero bytes long (not written by tether). */
  empty?: true;
}

const KINDS_BY_VICTIM_ORDER: readonly OutboxKind[] = ['telemetry', 'other', 'state'];
/**
 * Under fsync 'always', a write that holds only acks is synced within this many ms (at once
 * for flush() and close(), or with the next write holding anything else) instead of at once:
 * a power loss that takes an ack only makes its message be delivered once more (delivery is
 * at least once anyway), while the entries, drops and coalesced records are synced at once.
 * Most writes of a burst's drain hold only acks: the leg bench's 20,000-message burst made
 * 145-188 fdatasync calls before, 14-17 with this.
 */
const ACK_SYNC_MS = 1000;
const NO_VICTIMS: Slot[] = Object.freeze([]) as unknown as Slot[];
/** A clean journal is rewritten at open only when its garbage exceeds its live part and this. */
const OPEN_GARBAGE_BYTES = 64 * 1024;

interface Slot {
  entry: OutboxEntry;
  /** topic + payload bytes, what maxBytes bounds. */
  size: number;
  /** Bytes of its journal line, for the garbage estimate (0: not journaled, see OutboxMessage.durable). */
  lineBytes: number;
  /** Journaled (see OutboxMessage.durable): its removal is journaled too. */
  durable: boolean;
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
  private readonly fsyncPolicy: 'always' | 'never' | 'batch';
  private readonly fsyncBatchMs: number;
  private readonly diskRetryMs: number;
  private readonly dropLogIntervalMs: number;
  private readonly io: OutboxFs;

  /** Pending entries by id, in id (= enqueue) order. */
  private readonly slots = new Map<number, Slot>();
  /**
   * The same slots split by kind, each in id order, to find victims without scanning. Made
   * when a slot of the kind comes and dropped when the last one goes, as is retainedByTopic:
   * a fleet's outboxes are empty nearly always, and an empty Map is about 190 bytes.
   */
  private readonly byKind: Record<OutboxKind, Map<number, Slot> | undefined> = { telemetry: undefined, state: undefined, other: undefined };
  /** Topic -> its pending retained slot. */
  private retainedByTopic: Map<string, Slot> | undefined;
  /** Where the last pendingAfter() stopped (an exhausted iterator is never kept: it stays done). */
  private cursor: { it: IterableIterator<Slot>; lastId: number } | undefined;
  private nextId = 1;
  private totalBytes = 0;
  private liveLineBytes = 0;
  private droppedCount = 0;
  private readonly droppedKinds: Record<OutboxKind, number> = { telemetry: 0, state: 0, other: 0 };
  private coalescedCount = 0;

  private fd: number | undefined;
  /** The journal is healthy on disk but its fd is closed while idle (idleCloseMs): the next write opens it. */
  private parked = false;
  /**
   * There is no journal file yet (none at open, or it was moved aside): nothing is created
   * until a record has to be written, then the first rewrite creates it from memory. A fleet
   * whose outboxes only ever hold memory-only messages (OutboxMessage.durable) creates no file.
   */
  private absent = false;
  private readonly idleCloseMs: number;
  private idleTimer: TimerHandle | undefined;
  /** When I/O last went quiet (clock ms). */
  private quietSince = 0;
  private readonly fdPool: JournalFdPool | undefined;
  /** This outbox holds one of fdPool's descriptors (from before its fd is opened until it is closed). */
  private holdsSlot = false;
  /** Registered with fdPool as only waiting out its idle time. */
  private markedIdle = false;
  /** Given to fdPool while markedIdle (made the first time). */
  private evictNow: (() => void) | undefined;
  /** Journal bytes, written or waiting to be: for the garbage estimate. */
  private journalBytes = 0;
  /**
   * Records waiting for the writer, each batch '\n'-terminated; kept as text and encoded once
   * per write (one Buffer per write, not one per record).
   */
  private queued: string[] = [];
  private queuedBytes = 0;
  /** Bumped by every batch of records; the writer and syncer track how far they got. */
  private seq = 0;
  private writtenSeq = 0;
  private syncedSeq = 0;
  /** The last batch holding a record 'always' syncs at once (anything but an ack). */
  private urgentSeq = 0;
  /** The I/O loop (writes and rewrites, one at a time) is running. */
  private ioRunning = false;
  private rewriteWanted = false;
  private rewriting = false;
  /** Rewrite attempts finished (ok or not), for compact()'s waiters. */
  private rewritesDone = 0;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private syncTimer: TimerHandle | undefined;
  private seqWaiters: Array<{ seq: number; resolve: () => void }> = [];
  private rewriteWaiters: Array<{ after: number; resolve: () => void }> = [];
  private idleWaiters: Array<() => void> = [];
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
    this.idleCloseMs = options.idleCloseMs ?? 1000;
    this.fdPool = options.fdPool;
    if (!(this.idleCloseMs >= 0)) throw new RangeError(`idleCloseMs must be >= 0, got ${this.idleCloseMs}`);
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
    const fsync = options.fsync ?? 'always';
    if (fsync === true || fsync === 'always') {
      this.fsyncPolicy = 'always';
      this.fsyncBatchMs = 0;
    } else if (fsync === false || fsync === 'never') {
      this.fsyncPolicy = 'never';
      this.fsyncBatchMs = 0;
    } else if (typeof fsync === 'object' && Number.isSafeInteger(fsync.batchMs) && fsync.batchMs >= 1) {
      this.fsyncPolicy = 'batch';
      this.fsyncBatchMs = fsync.batchMs;
    } else {
      throw new RangeError(`fsync must be 'always', 'never' or { batchMs: integer >= 1 }, got ${JSON.stringify(fsync)}`);
    }
    this.io = options.fs ?? nodeFs;
  }

  /**
   * Opens the journal at `path`, replaying it if there is one (a missing one, and its directory,
   * is created with the first record that has to be written):
   * the outbox then holds exactly the entries that were enqueued and not acked, dropped or
   * coalesced, in their order and with their ids. A torn last record (crash mid-write) is
   * ignored and logged; a record failing its checksum is skipped, counted and logged. A file
   * that is not an outbox journal of a known version is moved aside (never overwritten) and the
   * outbox starts empty. A damaged or mostly-garbage journal is then rewritten compactly; if that
   * fails the outbox starts degraded (see the file comment). Rejects only when the file cannot be read (other than
   * missing) or cannot be moved aside.
   */
  static async open(path: string, options: DurableOutboxOptions = {}): Promise<DurableOutbox> {
    const outbox = new DurableOutbox(path, options);
    await outbox.recover(options.knownAbsent === true);
    return outbox;
  }

  /** The fsync policy in force. */
  get fsync(): FsyncPolicy {
    return this.fsyncPolicy === 'batch' ? { batchMs: this.fsyncBatchMs } : this.fsyncPolicy;
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
  /** Whether the journal's file descriptor is open now (it is closed while idle: idleCloseMs). */
  get journalOpen(): boolean {
    return this.fd !== undefined;
  }

  get diskErrors(): number {
    return this.diskErrorCount;
  }

  has(id: number): boolean {
    return this.slots.has(id);
  }

  /**
   * Queues `message` and returns its entry. Its journal record is handed to the writer (see
   * flush(); if the disk fails the entry is held in memory, see the file comment). May drop
   * older entries, or this one, to stay within bounds; may replace an older retained value.
   * Never throws for disk errors; throws for invalid messages or after close().
   */
  enqueue(message: OutboxMessage): OutboxEntry {
    if (this.closed) throw new Error('DurableOutbox is closed');
    validate(message);
    const durable = message.durable !== false;
    const entry: OutboxEntry = Object.freeze({
      id: this.nextId++,
      enqueuedAt: this.wallClock(),
      topic: message.topic,
      payload: Buffer.from(message.payload),
      qos: message.qos,
      retain: message.retain,
      kind: message.kind,
    });
    const line = durable ? encodeEntry(entry) : '';
    const slot: Slot = { entry, size: entrySize(entry), lineBytes: durable ? Buffer.byteLength(line) + 1 : 0, durable };
    const reason: DropReason = this.isDegraded ? 'disk-error' : 'full';

    const replaced = coalesces(entry) ? this.retainedByTopic?.get(entry.topic) : undefined;
    const plan = this.planVictims(slot, replaced);
    if (plan === 'drop-new') {
      // Journal the id only, so that ids keep increasing across a reopen (a memory-only id never reaches the journal).
      if (durable) this.journal(`${encodeDrop(entry.id, reason)}\n`);
      this.noteDrop(entry, reason);
      return entry;
    }
    if (!replaced && plan.length === 0) {
      this.insert(slot);
      if (durable) this.journal(`${line}\n`, slot.lineBytes);
    } else {
      // Only what the journal holds needs a record: a memory-only entry comes and goes unwritten.
      let text = '';
      if (replaced) {
        this.remove(replaced);
        if (replaced.durable) text += `${encodeCoalesced(replaced.entry.id, entry.id)}\n`;
      }
      for (const victim of plan) {
        this.remove(victim);
        if (victim.durable) text += `${encodeDrop(victim.entry.id, reason)}\n`;
      }
      this.insert(slot);
      if (durable) text += `${line}\n`;
      if (text !== '') this.journal(text);
    }

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

  /**
   * Pending entries with an id above `afterId`, oldest first, at most `limit`. The pump asks for
   * what follows the last entry it sent: a call that continues where the previous one stopped
   * resumes the same (live) Map iterator instead of walking past the entries in flight again,
   * so a publish costs O(1) here, not O(inflight).
   */
  pendingAfter(afterId: number, limit: number): OutboxEntry[] {
    const out: OutboxEntry[] = [];
    if (limit <= 0) return out;
    const cursor = this.cursor;
    this.cursor = undefined;
    // A Map iterator sees deletions and later insertions (ids only grow, so those come after it).
    const it = cursor !== undefined && cursor.lastId === afterId ? cursor.it : this.slots.values();
    for (let r = it.next(); !r.done; r = it.next()) {
      const entry = r.value.entry;
      if (entry.id <= afterId) continue;
      out.push(entry);
      if (out.length >= limit) {
        this.cursor = { it, lastId: entry.id };
        break;
      }
    }
    return out;
  }

  /** Marks entry `id` delivered: it is no longer pending. Idempotent; unknown ids are ignored. */
  ack(id: number): void {
    const slot = this.slots.get(id);
    if (!slot) return;
    this.remove(slot);
    if (slot.durable) {
      const ackLine = `${encodeAck(id)}\n`;
      this.journal(ackLine, ackLine.length, false); // ASCII: one byte a character; not urgent (see ACK_SYNC_MS)
    }
    this.emit('ack', slot.entry);
    this.maybeCompact();
  }

  /**
   * Rewrites the journal with only the pending entries (temp file, then an atomic rename over
   * the journal). Also the way back from degraded. Never rejects; on failure the old journal is
   * kept (and stays in use if it was healthy). Resolves when that rewrite has finished.
   */
  compact(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.requestRewrite();
  }

  /**
   * Resolves once every record of what was enqueued or acked before the call is written to the
   * journal and, unless fsync is 'never', synced to the disk (in 'batch' mode this syncs now),
   * and the compactions under way or wanted at the call have finished. Never rejects: while degraded it resolves once the
   * repair attempt under way (if any) has finished, with the outbox still `degraded` if it failed.
   */
  async flush(): Promise<void> {
    // A rewrite under way and one wanted after it: both, or the second could still rename its
    // snapshot over the journal after flush() resolved.
    const rewrites = (this.rewriting ? 1 : 0) + (this.rewriteWanted ? 1 : 0);
    const rewrite = rewrites > 0 ? this.rewriteDone(this.rewritesDone + rewrites - 1) : undefined;
    const target = this.seq;
    if (this.fsyncPolicy !== 'never' && this.writtenSeq > this.syncedSeq) this.startSync(); // written acks wait for no timer
    if (rewrite) await rewrite;
    if (!this.isDurable(target) && !this.isDegraded && this.journalUsable()) {
      await new Promise<void>((resolve) => {
        this.seqWaiters.push({ seq: target, resolve });
        this.kick();
      });
    }
    if (this.isDegraded) await this.whenIdle();
  }

  /**
   * Writes and syncs what is left (a last repair attempt if degraded) and closes the journal.
   * Leaves no timer or handle behind.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelIdleTimer();
    this.unmarkIdle();
    this.flushDropLog();
    if (this.isDegraded) this.rewriteWanted = true;
    this.kick();
    await this.whenIdle();
    this.cancelSyncTimer();
    if (this.fd !== undefined && this.fsyncPolicy !== 'never' && this.writtenSeq > this.syncedSeq) this.startSync();
    await this.whenIdle();
    if (this.fd !== undefined) {
      const fd = this.fd;
      this.fd = undefined;
      await this.io.close(fd).catch(() => {});
    }
    this.releaseSlot();
    this.parked = false;
    this.settleWaiters(true);
  }

  // ---- queue bookkeeping ----

  private insert(slot: Slot): void {
    const { entry } = slot;
    this.slots.set(entry.id, slot);
    (this.byKind[entry.kind] ??= new Map()).set(entry.id, slot);
    if (coalesces(entry)) (this.retainedByTopic ??= new Map()).set(entry.topic, slot);
    this.totalBytes += slot.size;
    this.liveLineBytes += slot.lineBytes;
  }

  private remove(slot: Slot): void {
    const { entry } = slot;
    this.slots.delete(entry.id);
    const ofKind = this.byKind[entry.kind]!;
    ofKind.delete(entry.id);
    if (ofKind.size === 0) this.byKind[entry.kind] = undefined;
    const retained = this.retainedByTopic;
    if (retained !== undefined && retained.get(entry.topic) === slot) {
      retained.delete(entry.topic);
      if (retained.size === 0) this.retainedByTopic = undefined;
    }
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
    if (this.slots.size + 1 <= this.maxEntries && this.totalBytes + incoming.size <= this.maxBytes) return NO_VICTIMS; // the common case
    let count = this.slots.size + 1 - (replaced ? 1 : 0);
    let bytes = this.totalBytes + incoming.size - (replaced?.size ?? 0);
    const over = () => count > this.maxEntries || bytes > this.maxBytes;
    const victims: Slot[] = [];
    for (const kind of KINDS_BY_VICTIM_ORDER) {
      if (!over()) break;
      for (const slot of this.byKind[kind]?.values() ?? NO_VICTIMS) {
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
   * Hands `text` (records, each '\n'-terminated; `bytes` its UTF-8 length if known) to the
   * writer as one batch (one write, so a crash tears at most the last of them). While degraded
   * nothing is appended (the file may end in a partial line): the whole journal is rewritten
   * from memory instead, at most once per diskRetryMs.
   */
  private journal(text: string, bytes = Buffer.byteLength(text), urgent = true): void {
    if (this.closed) return;
    if (this.absent && !this.isDegraded && !this.rewriting) {
      // The first record: the rewrite creates the journal with a snapshot that holds it.
      if (!this.rewriteWanted) void this.requestRewrite();
      return;
    }
    // During a rewrite, records made after its snapshot must follow it into the new journal.
    if (!this.rewriting && (this.isDegraded || !this.journalUsable())) {
      if (this.clock.now() - this.lastRepairAt >= this.diskRetryMs) {
        this.lastRepairAt = this.clock.now();
        void this.requestRewrite();
      }
      return;
    }
    if (this.markedIdle) this.unmarkIdle();
    this.queued.push(text);
    this.queuedBytes += bytes;
    this.journalBytes += bytes;
    this.seq++;
    if (urgent) this.urgentSeq = this.seq;
    this.kick();
  }

  /** The journal can take appends: its fd is open, or closed only because it was idle. */
  private journalUsable(): boolean {
    return this.fd !== undefined || this.parked;
  }

  private isDurable(seq: number): boolean {
    return (this.fsyncPolicy === 'never' ? this.writtenSeq : this.syncedSeq) >= seq;
  }

  /**
   * Starts the I/O loop unless it runs. An append starts its write at once, not deferred to
   * gather more records: a kill -9 right after enqueue() or ack() returns then finds the write
   * already issued (test/integration/outbox-crash.test.ts relies on it); the records that come
   * while it is under way go out together in the next write.
   */
  private kick(): void {
    if (this.ioRunning) return;
    this.ioRunning = true;
    void this.ioLoop();
  }

  /** Writes and rewrites, one at a time, until there is nothing left to do. */
  private async ioLoop(): Promise<void> {
    try {
      for (;;) {
        if (this.rewriteWanted) {
          this.rewriteWanted = false;
          await this.rewrite();
          this.rewritesDone++;
          this.settleRewriteWaiters();
          continue;
        }
        if (this.queued.length > 0 && !this.isDegraded && this.journalUsable()) {
          if (this.fd === undefined) {
            // Closed while idle: open it again to append (never created here: if it is gone,
            // that is a disk error and the rewrite from memory puts it back).
            try {
              await this.acquireSlot();
              this.fd = await this.io.open(this.path, fsConstants.O_WRONLY | fsConstants.O_APPEND);
            } catch (err) {
              this.releaseSlot();
              this.enterDegraded(err);
              continue;
            } finally {
              this.parked = false;
            }
          }
          const batch = Buffer.from(this.queued.length === 1 ? this.queued[0]! : this.queued.join(''));
          const upTo = this.seq;
          this.queued = [];
          this.queuedBytes = 0;
          try {
            await writeAll(this.io, this.fd, batch);
            this.writtenSeq = upTo;
            this.afterWrite();
          } catch (err) {
            this.enterDegraded(err);
          }
          this.settleWaiters(false);
          continue;
        }
        break;
      }
    } finally {
      this.ioRunning = false;
      if (this.isDegraded) {
        this.queued = [];
        this.queuedBytes = 0;
      }
      this.settleWaiters(false);
      this.settleIdle();
      this.noteQuiet();
    }
  }

  /** A sync is due now: a flush() waits, or ('always') a written record is not yet synced that has to be. */
  private syncUrgent(): boolean {
    return this.seqWaiters.length > 0 || (this.fsyncPolicy === 'always' && this.urgentSeq > this.syncedSeq);
  }

  private afterWrite(): void {
    if (this.fsyncPolicy === 'never') return;
    // Others wait for a descriptor: sync now rather than hold this one for the batch timer.
    if (this.syncUrgent() || (this.fdPool !== undefined && this.fdPool.waiting > 0)) this.startSync();
    else if (this.syncTimer === undefined) {
      this.syncTimer = this.clock.setTimeout(
        () => {
          this.syncTimer = undefined;
          this.startSync();
        },
        this.fsyncPolicy === 'batch' ? this.fsyncBatchMs : ACK_SYNC_MS,
      );
      (this.syncTimer as { unref?: () => void }).unref?.();
    }
  }

  /**
   * Syncs the journal (concurrently with the next write: a sync covers at least what was
   * written before it started). A failed sync may have lost written pages: degraded, and the
   * journal is rewritten from memory.
   */
  private startSync(): void {
    this.cancelSyncTimer();
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    const fd = this.fd;
    if (fd === undefined || this.isDegraded) return;
    const target = this.writtenSeq;
    this.syncing = this.io.sync(fd).then(
      () => {
        if (this.fd === fd) this.syncedSeq = Math.max(this.syncedSeq, target);
      },
      (err: unknown) => {
        if (this.fd === fd) this.enterDegraded(err);
      },
    );
    void this.syncing.finally(() => {
      this.syncing = undefined;
      const again = this.syncAgain || this.syncUrgent();
      this.syncAgain = false;
      if (again && !this.isDegraded && this.fd !== undefined && this.writtenSeq > this.syncedSeq) this.startSync();
      this.settleWaiters(false);
      this.settleIdle();
      this.noteQuiet();
    });
  }

  // ---- closing the journal's fd while idle ----

  /** Nothing is under way or due: everything appended is written and (unless 'never') synced. */
  private quiet(): boolean {
    return (
      !this.ioRunning &&
      !this.syncing &&
      !this.rewriting &&
      !this.rewriteWanted &&
      this.queued.length === 0 &&
      this.syncTimer === undefined &&
      this.seqWaiters.length === 0 &&
      (this.fsyncPolicy === 'never' || this.syncedSeq >= this.writtenSeq)
    );
  }

  /** I/O has finished: close the fd once it stays quiet for idleCloseMs (one timer, re-armed lazily). */
  private noteQuiet(): void {
    if (this.closed || this.fd === undefined || this.isDegraded || !this.quiet() || !Number.isFinite(this.idleCloseMs)) return;
    this.quietSince = this.clock.now();
    if (this.fdPool !== undefined && this.fdPool.waiting > 0) {
      this.closeIfIdle(true); // others wait for a descriptor: no idle time
      return;
    }
    if (this.idleTimer === undefined) this.armIdleTimer(this.idleCloseMs);
    if (this.fdPool !== undefined && !this.markedIdle) {
      this.markedIdle = true;
      this.fdPool.markIdle(
        (this.evictNow ??= () => {
          this.markedIdle = false;
          this.closeIfIdle(true);
        }),
      );
    }
  }

  private armIdleTimer(ms: number): void {
    this.idleTimer = this.clock.setTimeout(() => {
      this.idleTimer = undefined;
      this.closeIfIdle();
    }, ms);
    (this.idleTimer as { unref?: () => void }).unref?.();
  }

  /** Closes the fd if quiet and idle for idleCloseMs (`now`: idle or not). */
  private closeIfIdle(now = false): void {
    if (this.closed || this.fd === undefined || this.isDegraded || !this.quiet()) return; // the next noteQuiet() arms it again
    const left = this.quietSince + this.idleCloseMs - this.clock.now();
    if (left > 0 && !now) {
      this.armIdleTimer(left); // I/O came and went since it was armed
      return;
    }
    this.cancelIdleTimer();
    this.unmarkIdle();
    const fd = this.fd;
    this.fd = undefined;
    this.parked = true;
    void this.io.close(fd).catch(() => {}); // written and synced already: nothing in it is at risk
    this.releaseSlot(); // at once: a reopen right after must acquire its own
  }

  private async acquireSlot(): Promise<void> {
    if (this.fdPool === undefined || this.holdsSlot) return;
    this.holdsSlot = true; // before the wait: a second caller meanwhile must not acquire twice
    await this.fdPool.acquire();
  }

  private releaseSlot(): void {
    if (this.fdPool === undefined || !this.holdsSlot) return;
    this.holdsSlot = false;
    this.fdPool.release();
  }

  private unmarkIdle(): void {
    if (!this.markedIdle) return;
    this.markedIdle = false;
    if (this.evictNow !== undefined) this.fdPool?.unmarkIdle(this.evictNow);
  }

  private cancelIdleTimer(): void {
    if (this.idleTimer === undefined) return;
    this.clock.clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private cancelSyncTimer(): void {
    if (this.syncTimer === undefined) return;
    this.clock.clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
  }

  private requestRewrite(): Promise<void> {
    // A rewrite under way took its snapshot already: wait for the one after it.
    const done = this.rewriteDone(this.rewriting && !this.rewriteWanted ? this.rewritesDone + 1 : this.rewritesDone);
    this.rewriteWanted = true;
    this.kick();
    return done;
  }

  /** Resolves when a rewrite attempt finishes after `after` had finished. */
  private rewriteDone(after: number): Promise<void> {
    return new Promise<void>((resolve) => this.rewriteWaiters.push({ after, resolve }));
  }

  private settleRewriteWaiters(): void {
    const keep: typeof this.rewriteWaiters = [];
    for (const w of this.rewriteWaiters) {
      if (this.rewritesDone > w.after) w.resolve();
      else keep.push(w);
    }
    this.rewriteWaiters = keep;
  }

  /** Resolves flush() waiters that are durable (or all of them when `all` or degraded). */
  private settleWaiters(all: boolean): void {
    if (this.seqWaiters.length === 0) return;
    const everyone = all || this.isDegraded || !this.journalUsable();
    const keep: typeof this.seqWaiters = [];
    for (const w of this.seqWaiters) {
      if (everyone || this.isDurable(w.seq)) w.resolve();
      else keep.push(w);
    }
    this.seqWaiters = keep;
  }

  private whenIdle(): Promise<void> {
    if (!this.ioRunning && !this.syncing) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private settleIdle(): void {
    if (this.ioRunning || this.syncing || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private enterDegraded(err: unknown): void {
    this.diskErrorCount++;
    this.lastRepairAt = this.clock.now();
    this.cancelSyncTimer();
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
    if (this.closed || this.isDegraded || this.rewriteWanted) return;
    const garbage = this.journalBytes - this.liveLineBytes;
    const due =
      (this.removalsSinceCompact >= this.compactEvery && garbage >= this.liveLineBytes) ||
      garbage >= this.liveLineBytes + 2 * this.maxBytes;
    if (due) void this.requestRewrite();
  }

  /**
   * Writes header + pending entries to a temp file and renames it over the journal. The queue
   * is snapshotted first (entries are immutable); records made while it runs wait and are
   * appended to the new journal after the rename. Never throws.
   */
  private async rewrite(): Promise<boolean> {
    const tmp = `${this.path}.compact`;
    const sync = this.fsyncPolicy !== 'never';
    // The snapshot: what the queued records say is already in it, unless the rewrite fails.
    const slots = [...this.slots.values()];
    const nextId = this.nextId;
    const snapshotSeq = this.seq;
    const before = this.queued;
    this.queued = [];
    this.queuedBytes = 0;
    const removalsBefore = this.removalsSinceCompact;
    this.removalsSinceCompact = 0;
    this.rewriting = true;
    let fd: number | undefined;
    try {
      if (this.fd === undefined) await this.acquireSlot(); // the new journal's fd (an open one hands its slot over)
      await this.io.mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
      fd = await this.io.open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_APPEND, 0o600);
      let written = 0;
      let chunk: string[] = [encodeHeader(nextId)];
      let chunkLength = 0;
      const flush = async () => {
        const buffer = Buffer.from(chunk.join('\n') + '\n');
        chunk = [];
        chunkLength = 0;
        await writeAll(this.io, fd!, buffer);
        written += buffer.length;
      };
      for (const slot of slots) {
        if (!slot.durable) continue; // memory only (OutboxMessage.durable)
        const line = encodeEntry(slot.entry);
        chunk.push(line);
        chunkLength += line.length;
        if (chunkLength >= 1 << 18) await flush(); // small chunks: the encoding between writes stays short
      }
      if (chunk.length > 0) await flush();
      if (sync) await this.io.sync(fd);
      await this.io.rename(tmp, this.path);
      if (sync) await this.syncDirectory();
      const old = this.fd;
      this.fd = fd;
      this.parked = false;
      this.absent = false;
      fd = undefined;
      this.journalBytes = written + this.queuedBytes;
      this.writtenSeq = Math.max(this.writtenSeq, snapshotSeq);
      if (sync) this.syncedSeq = Math.max(this.syncedSeq, snapshotSeq);
      if (old !== undefined) {
        await this.syncing; // a sync of the old journal in flight must finish before its fd closes
        await this.io.close(old).catch(() => {});
      }
      if (this.isDegraded) {
        this.isDegraded = false;
        this.logger.info({ path: this.path, pending: this.slots.size }, 'outbox journal writable again');
        this.emit('recovered');
      }
      return true;
    } catch (err) {
      if (fd !== undefined) {
        await this.io.close(fd).catch(() => {});
        await this.io.unlink(tmp).catch(() => {}); // else left for the next rewrite to truncate
      }
      if (this.fd === undefined) this.releaseSlot();
      this.removalsSinceCompact += removalsBefore;
      if (this.isDegraded || !this.journalUsable()) {
        this.enterDegraded(err);
      } else {
        // The old journal is intact and still appended to: nothing is at risk. The records the
        // snapshot would have covered still have to go to it.
        this.queued = [...before, ...this.queued];
        this.queuedBytes += before.reduce((n, text) => n + Buffer.byteLength(text), 0);
        this.diskErrorCount++;
        this.logger.warn({ err, code: errorCode(err), path: this.path }, 'outbox journal compaction failed');
      }
      return false;
    } finally {
      this.rewriting = false;
    }
  }

  private async syncDirectory(): Promise<void> {
    try {
      const dirFd = await this.io.open(dirname(this.path), fsConstants.O_RDONLY);
      try {
        await this.io.sync(dirFd);
      } finally {
        await this.io.close(dirFd);
      }
    } catch {
      // Some filesystems refuse fsync on a directory; the rename is still atomic.
    }
  }

  // ---- recovery ----

  /**
   * Opening: replays the journal. A journal that does not exist is not created here (see
   * `absent`). A clean one (version 2, every line whole and checked, '\n'-terminated, nothing
   * dropped by the bounds, little garbage) is appended to as it is; anything else is rewritten.
   * Creating or rewriting a journal costs two fsyncs (file and directory): at 10,000 boards
   * that, one board after the other through the file system, held the start-up for ~20 s.
   */
  private async recover(knownAbsent: boolean): Promise<void> {
    let maxId = 0;
    const apply = (record: JournalRecord) => {
      switch (record.type) {
        case 'entry': {
          const { entry } = record;
          maxId = Math.max(maxId, entry.id);
          if (this.slots.has(entry.id)) {
            duplicates++;
            return;
          }
          this.insert({ entry: Object.freeze(entry), size: entrySize(entry), lineBytes: Buffer.byteLength(encodeEntry(entry)) + 1, durable: true });
          return;
        }
        case 'ack':
        case 'drop':
        case 'coalesced': {
          maxId = Math.max(maxId, record.id, record.type === 'coalesced' ? record.by : 0);
          const slot = this.slots.get(record.id);
          if (slot) this.remove(slot);
        }
      }
    };
    let duplicates = 0;
    let summary;
    try {
      // A record holds at most maxBytes of topic + payload, base64 grows it by 4/3.
      // knownAbsent: what readJournal says of a missing file (undefined), without asking the disk.
      summary = knownAbsent ? undefined : await readJournal(this.io, this.path, apply, { maxLineBytes: Math.ceil((this.maxBytes * 4) / 3) + 64 * 1024 });
    } catch (err) {
      if (!(err instanceof JournalFormatError)) throw err;
      await this.moveAside(err.message);
      summary = undefined;
    }
    if (summary !== undefined) {
      this.nextId = Math.max(maxId, summary.headerNext - 1) + 1;
      const corrupt = summary.corrupt + duplicates;
      Object.assign(this.recovery, { entries: this.slots.size, torn: summary.torn, corrupt });
      if (summary.bytes === 0) {
        this.recovery.empty = true;
        this.logger.warn({ path: this.path }, `outbox journal ${this.path} is empty (zero bytes; tether never writes that): starting with an empty outbox`);
      }
      if (summary.torn) {
        this.logger.warn({ path: this.path }, 'outbox journal ended in a torn record (crash mid-write); ignored it');
      }
      if (corrupt) {
        this.logger.error(
          { path: this.path, corrupt, lines: summary.corruptLines },
          `outbox journal ${this.path} had ${corrupt} damaged record(s) (bad checksum or unreadable); skipped them, never published`,
        );
      }
      this.logger.info(
        { path: this.path, pending: this.slots.size, bytes: this.totalBytes, nextId: this.nextId },
        'outbox recovered',
      );
    }
    const dropped = this.enforceBoundsAfterReplay();
    this.removalsSinceCompact = 0;
    if (summary === undefined) {
      this.absent = true; // missing, or moved aside: created when a record has to be written
      return;
    }
    const garbage = summary.bytes - this.liveLineBytes;
    const clean =
      summary.version === 2 &&
      summary.torn === 0 &&
      this.recovery.corrupt === 0 &&
      summary.bytes > 0 &&
      summary.unterminated === undefined &&
      dropped === 0 &&
      garbage <= Math.max(this.liveLineBytes, OPEN_GARBAGE_BYTES);
    if (clean) {
      this.journalBytes = summary.bytes;
      this.parked = true; // appended to as it is: the next write opens it (O_APPEND)
      return;
    }
    await this.requestRewrite();
  }

  /** Renames an unreadable journal out of the way, keeping it for a post-mortem. */
  private async moveAside(reason: string): Promise<void> {
    // Whatever replay inserted before the header turned out bad is not to be trusted.
    for (const slot of [...this.slots.values()]) this.remove(slot);
    const to = `${this.path}.corrupt-${new Date(this.wallClock()).toISOString().replace(/[:.]/g, '-')}`;
    try {
      await this.io.rename(this.path, to);
    } catch (err) {
      throw new Error(`outbox journal ${this.path} is unreadable (${reason}) and could not be moved aside to ${to}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.recovery.movedAside = to;
    this.recovery.movedAsideReason = reason;
    this.logger.error(
      { path: this.path, movedTo: to, reason },
      `outbox journal ${this.path} is unreadable (${reason}): moved it aside to ${to}; this device starts with an empty outbox`,
    );
  }

  /** The bounds may have shrunk since the journal was written. How many entries it dropped. */
  private enforceBoundsAfterReplay(): number {
    const over = () => this.slots.size > this.maxEntries || this.totalBytes > this.maxBytes;
    let dropped = 0;
    for (const kind of KINDS_BY_VICTIM_ORDER) {
      for (const slot of this.byKind[kind]?.values() ?? NO_VICTIMS) {
        if (!over()) return dropped;
        this.remove(slot);
        this.noteDrop(slot.entry, 'full');
        dropped++;
      }
    }
    return dropped;
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
