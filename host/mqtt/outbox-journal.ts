/**
 * The on-disk format of the durable outbox (see durable-outbox.ts), kept apart so the format
 * can be read and tested on its own.
 *
 * ## Format, version 2: one record per line, each ended by '\n'
 *
 *   <crc> {"tether-outbox":2,"next":42}                             header, always the first line
 *   <crc> {"id":42,"at":1718000000000,"kind":"telemetry","qos":1,"retain":false,"topic":"a/b","payload":"<base64>"}
 *   <crc> {"ack":42}                                                delivered: no longer pending
 *   <crc> {"drop":42,"reason":"full"}                               dropped by the overflow policy
 *   <crc> {"coalesced":41,"by":42}                                  retained value 41 superseded by 42
 *
 * `<crc>` is the CRC-32 (IEEE) of the UTF-8 JSON after it, as 8 lowercase hex digits, then one
 * space. A line whose checksum does not match is never used: a flipped bit in a payload, a topic
 * or an ack id is detected, skipped and counted, never published or applied.
 *
 * - The header's `next` is the smallest id the writer may hand out next. Ids only grow: on
 *   replay the next id is max(header.next, 1 + every id named by any record).
 * - `at` is wall-clock milliseconds since the epoch (it has to mean something after a restart).
 * - The journal is append-only between compactions. A compaction writes a header plus one entry
 *   line per pending entry to a temp file and renames it over the journal.
 * - Replay applies records in order; ack/drop/coalesced of an id that is not pending is a no-op.
 * - A crash in the middle of an append leaves a torn last line (cut short, no '\n'). Replay
 *   ignores it and reports it as `torn`. A last line that is complete and checks out but lacks
 *   only its '\n' is accepted. A bad line before the last one cannot come from a crash and is
 *   reported as `corrupt`, skipped, and replay goes on.
 * - A header that is unreadable, fails its checksum or names an unknown version makes the file
 *   unreadable as a whole (JournalFormatError); the outbox then moves it aside, never
 *   overwriting it (see durable-outbox.ts).
 *
 * Version 1 (written by older tether: the same JSON lines without the `<crc> ` prefix, header
 * `{"tether-outbox":1,...}`) is still read, so an upgrade keeps its queue; the outbox rewrites
 * it as version 2 on open.
 *
 * Reading is streamed (JournalReader takes chunks), so a journal of any size (maxBytes may be
 * 4 GiB) is replayed without holding it in memory as one string.
 */
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import type { OutboxEntry, OutboxKind } from './durable-outbox.ts';

export const JOURNAL_VERSION = 2;
const HEADER_KEY = 'tether-outbox';

// ---- CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), zlib's crc32 ----

/** CRC-32 of `data[start, end)` (zlib's, native: the journal checksums every record). */
export function crc32(data: Uint8Array, start = 0, end = data.length): number {
  return zlib.crc32(start === 0 && end === data.length ? data : data.subarray(start, end));
}

function hex8(n: number): string {
  return (n + 0x100000000).toString(16).slice(1); // n is unsigned 32-bit: 9 digits, drop the 1
}

/** `<crc> <json>` for one record (no '\n'); the CRC is of the JSON's UTF-8 bytes. */
export function sealLine(json: string): string {
  return `${hex8(zlib.crc32(json))} ${json}`;
}

// ---- file operations ----

/**
 * The file operations the outbox uses, all asynchronous (nothing blocks the event loop), so
 * tests can inject failures (ENOSPC, EIO) and crashes: running as root ignores permission
 * bits, so an unwritable file is no way to test this.
 */
export interface OutboxFs {
  open(path: string, flags: number, mode?: number): Promise<number>;
  write(fd: number, buffer: Buffer, offset: number, length: number): Promise<number>;
  /** Reads at `position` (null: the current offset). 0 at the end of the file. */
  read(fd: number, buffer: Buffer, offset: number, length: number, position: number | null): Promise<number>;
  /** fdatasync (or fsync): the data written so far survives power loss. */
  sync(fd: number): Promise<void>;
  close(fd: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdir(path: string, options: { recursive: true; mode?: number }): Promise<unknown>;
}

function cb<T>(run: (done: (err: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => run((err, value) => (err ? reject(err) : resolve(value as T))));
}

export const nodeFs: OutboxFs = {
  open: (path, flags, mode) => cb<number>((done) => fs.open(path, flags, mode, done)),
  write: (fd, buffer, offset, length) => cb<number>((done) => fs.write(fd, buffer, offset, length, null, done)),
  read: (fd, buffer, offset, length, position) => cb<number>((done) => fs.read(fd, buffer, offset, length, position, done)),
  sync: (fd) => cb<void>((done) => fs.fdatasync(fd, done)),
  close: (fd) => cb<void>((done) => fs.close(fd, done)),
  rename: (from, to) => cb<void>((done) => fs.rename(from, to, done)),
  unlink: (path) => cb<void>((done) => fs.unlink(path, done)),
  mkdir: (path, options) => cb<unknown>((done) => fs.mkdir(path, options, done)),
};

/** Writes all of `buffer`, looping over short writes. */
export async function writeAll(io: OutboxFs, fd: number, buffer: Buffer): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    const n = await io.write(fd, buffer, offset, buffer.length - offset);
    if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    offset += n;
  }
}

// ---- records ----

export type JournalRecord =
  | { type: 'entry'; entry: OutboxEntry }
  | { type: 'ack'; id: number }
  | { type: 'drop'; id: number; reason: string }
  | { type: 'coalesced'; id: number; by: number };

export function encodeHeader(nextId: number): string {
  return sealLine(JSON.stringify({ [HEADER_KEY]: JOURNAL_VERSION, next: nextId }));
}

export function encodeEntry(e: OutboxEntry): string {
  // What JSON.stringify of {id, at, kind, qos, retain, topic, payload} gives, without building
  // that object for every message: only the topic needs escaping (kind is one of three words,
  // base64 has nothing to escape).
  return sealLine(
    `{"id":${e.id},"at":${JSON.stringify(e.enqueuedAt)},"kind":"${e.kind}","qos":${e.qos},"retain":${e.retain},"topic":${JSON.stringify(e.topic)},"payload":"${e.payload.toString('base64')}"}`,
  );
}

export function encodeAck(id: number): string {
  return sealLine(`{"ack":${id}}`);
}

export function encodeDrop(id: number, reason: string): string {
  return sealLine(JSON.stringify({ drop: id, reason }));
}

export function encodeCoalesced(id: number, by: number): string {
  return sealLine(`{"coalesced":${id},"by":${by}}`);
}

/** The file is not an outbox journal this code can read; it must not be overwritten. */
export class JournalFormatError extends Error {
  override name = 'JournalFormatError';
}

export interface JournalSummary {
  /** 0 for an empty file, else the header's version (1 or 2). */
  version: number;
  /** From the header (1 for an empty file); replay still raises it past every id seen. */
  headerNext: number;
  /** 1 when the last line was cut short (crash mid-append), else 0. */
  torn: number;
  /** Bad lines before the last one (checksum mismatch, unparseable, malformed): skipped. */
  corrupt: number;
  /** Line numbers (1-based) of the corrupt lines, at most 10, for the log. */
  corruptLines: number[];
  /** Bytes read. */
  bytes: number;
  /** Set when the file does not end in '\n' (a torn or unterminated last line): nothing may be appended to it as it is. */
  unterminated?: true;
}

/** Everything a parse found, records included (for tests and small files). */
export interface ParsedJournal extends JournalSummary {
  records: JournalRecord[];
}

const KINDS: ReadonlySet<string> = new Set<OutboxKind>(['telemetry', 'state', 'other']);

function isId(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) > 0;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeRecord(obj: unknown): JournalRecord | undefined {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return undefined;
  const r = obj as Record<string, unknown>;
  if ('id' in r) {
    const { id, at, kind, qos, retain, topic, payload } = r;
    if (!isId(id) || typeof at !== 'number' || typeof kind !== 'string' || !KINDS.has(kind)) return undefined;
    if ((qos !== 0 && qos !== 1) || typeof retain !== 'boolean' || typeof topic !== 'string' || topic === '') return undefined;
    if (typeof payload !== 'string' || payload.length % 4 !== 0 || !BASE64.test(payload)) return undefined;
    return {
      type: 'entry',
      entry: { id, enqueuedAt: at, kind: kind as OutboxKind, qos, retain, topic, payload: Buffer.from(payload, 'base64') },
    };
  }
  if ('ack' in r) return isId(r.ack) ? { type: 'ack', id: r.ack } : undefined;
  if ('drop' in r) return isId(r.drop) ? { type: 'drop', id: r.drop, reason: String(r.reason) } : undefined;
  if ('coalesced' in r) {
    return isId(r.coalesced) && isId(r.by) ? { type: 'coalesced', id: r.coalesced, by: r.by } : undefined;
  }
  return undefined;
}

function tryParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const HEX8 = /^[0-9a-f]{8}$/;
const SPACE = 0x20;
const NEWLINE = 0x0a;

/**
 * The JSON of a version 2 line if its checksum matches, else undefined. Works on the bytes:
 * a corrupted line may not even be valid UTF-8.
 */
function openSealed(line: Buffer): string | undefined {
  if (line.length < 10 || line[8] !== SPACE) return undefined;
  const crcText = line.toString('latin1', 0, 8);
  if (!HEX8.test(crcText)) return undefined;
  if (parseInt(crcText, 16) !== crc32(line, 9)) return undefined;
  return line.toString('utf8', 9);
}

/**
 * Parses a journal streamed in chunks: push() each chunk, then end(). Records go to `onRecord`
 * as they are read. Throws JournalFormatError (from push() or end()) for a file that is not
 * a journal of a known version.
 */
export class JournalReader {
  readonly summary: JournalSummary = { version: 0, headerNext: 1, torn: 0, corrupt: 0, corruptLines: [], bytes: 0 };
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** A line longer than this is corrupt (its '\n' was lost): skipped up to the next '\n'. */
  private readonly maxLineBytes: number;
  private skipping = false;
  private lineNo = 0;
  private headerSeen = false;

  constructor(
    private readonly onRecord: (record: JournalRecord) => void,
    options: { maxLineBytes?: number } = {},
  ) {
    this.maxLineBytes = options.maxLineBytes ?? Infinity;
  }

  push(chunk: Buffer): void {
    this.summary.bytes += chunk.length;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        this.parts = [];
        this.partBytes = 0;
        continue; // already counted when it overflowed
      }
      const line = this.parts.length === 0 ? piece : Buffer.concat([...this.parts, piece]);
      this.parts = [];
      this.partBytes = 0;
      this.line(line, true);
    }
    if (start < chunk.length && !this.skipping) {
      const rest = chunk.subarray(start);
      this.parts.push(Buffer.from(rest)); // a copy: the caller may reuse its buffer
      this.partBytes += rest.length;
      if (this.partBytes > this.maxLineBytes) {
        this.lineNo++;
        this.countCorrupt();
        this.skipping = true;
        this.parts = [];
        this.partBytes = 0;
      }
    }
  }

  end(): JournalSummary {
    if (!this.skipping && this.partBytes > 0) {
      this.summary.unterminated = true;
      this.line(Buffer.concat(this.parts), false);
    }
    this.parts = [];
    this.partBytes = 0;
    return this.summary;
  }

  private countCorrupt(): void {
    this.summary.corrupt++;
    if (this.summary.corruptLines.length < 10) this.summary.corruptLines.push(this.lineNo);
  }

  private line(line: Buffer, terminated: boolean): void {
    this.lineNo++;
    if (!this.headerSeen) {
      this.header(line, terminated);
      return;
    }
    let parsed: unknown;
    if (this.summary.version === 1) {
      if (line.length === 0) return;
      parsed = tryParse(line.toString('utf8'));
    } else {
      const json = openSealed(line);
      parsed = json === undefined ? undefined : tryParse(json);
    }
    const record = parsed === undefined ? undefined : decodeRecord(parsed);
    if (record) this.onRecord(record);
    else if (!terminated) this.summary.torn = 1;
    else this.countCorrupt();
  }

  private header(line: Buffer, terminated: boolean): void {
    const sealed = openSealed(line);
    let header: unknown;
    if (sealed !== undefined) {
      header = tryParse(sealed);
    } else if (line[0] === 0x7b /* { */) {
      header = tryParse(line.toString('utf8')); // version 1 had no checksum
    }
    if (header === undefined || typeof header !== 'object' || header === null || !(HEADER_KEY in header)) {
      // Only the header itself, cut short: the crash hit while the file was being created.
      if (!terminated) {
        this.summary.torn = 1;
        this.headerSeen = true;
        return;
      }
      const why = /^[0-9a-f]{8} /.test(line.toString('latin1', 0, 9)) ? 'header checksum mismatch' : 'no header line';
      throw new JournalFormatError(`not a tether outbox journal (${why})`);
    }
    const h = header as Record<string, unknown>;
    if (sealed !== undefined ? h[HEADER_KEY] !== JOURNAL_VERSION : h[HEADER_KEY] !== 1) {
      throw new JournalFormatError(`unsupported outbox journal version ${JSON.stringify(h[HEADER_KEY])}`);
    }
    this.summary.version = h[HEADER_KEY] as number;
    if (isId(h.next)) this.summary.headerNext = h.next;
    this.headerSeen = true;
  }
}

/** Parses a whole journal held in memory (tests, small files). Throws JournalFormatError. */
export function parseJournal(data: Buffer): ParsedJournal {
  const records: JournalRecord[] = [];
  const reader = new JournalReader((r) => records.push(r));
  reader.push(data);
  return { ...reader.end(), records };
}

/**
 * Streams the journal at `path` through a JournalReader, `chunkBytes` at a time. Resolves
 * undefined when there is no file (ENOENT).
 */
export async function readJournal(
  io: OutboxFs,
  path: string,
  onRecord: (record: JournalRecord) => void,
  options: { chunkBytes?: number; maxLineBytes?: number } = {},
): Promise<JournalSummary | undefined> {
  let fd: number;
  try {
    fd = await io.open(path, fs.constants.O_RDONLY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const reader = new JournalReader(onRecord, { maxLineBytes: options.maxLineBytes });
    const buffer = Buffer.allocUnsafe(options.chunkBytes ?? 1 << 20);
    for (;;) {
      const n = await io.read(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      reader.push(buffer.subarray(0, n));
    }
    return reader.end();
  } finally {
    await io.close(fd).catch(() => {});
  }
}
