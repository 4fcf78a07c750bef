/**
 * The on-disk format of the durable outbox (see durable-outbox.ts), kept apart so the format
 * can be read and tested on its own.
 *
 * ## Format, version 1: UTF-8 JSON lines, each ended by '\n'
 *
 *   {"tether-outbox":1,"next":42}                                  header, always the first line
 *   {"id":42,"at":1718000000000,"kind":"telemetry","qos":1,"retain":false,"topic":"a/b","payload":"<base64>"}
 *   {"ack":42}                                                     delivered: no longer pending
 *   {"drop":42,"reason":"full"}                                    dropped by the overflow policy
 *   {"coalesced":41,"by":42}                                       retained value 41 superseded by 42
 *
 * - The header's `next` is the smallest id the writer may hand out next. Ids only grow: on
 *   replay the next id is max(header.next, 1 + every id named by any record).
 * - `at` is wall-clock milliseconds since the epoch (it has to mean something after a restart).
 * - The journal is append-only between compactions. A compaction writes a header plus one entry
 *   line per pending entry to a temp file and renames it over the journal.
 * - Replay applies records in order; ack/drop/coalesced of an id that is not pending is a no-op.
 * - A crash in the middle of an append leaves a torn last line (a JSON object cut short, so it
 *   never parses). Replay ignores it and reports it as `torn`. A last line that is complete
 *   JSON but lacks only its '\n' is accepted. An unparseable line before the last one cannot
 *   come from a crash (the writer never appends after a failed write) and is reported as
 *   `corrupt`, skipped, and replay goes on.
 * - A first line that is a header with another version, or a first line that is not a header,
 *   makes the file unreadable (JournalFormatError): it is never overwritten.
 */
import * as fs from 'node:fs';
import type { OutboxEntry, OutboxKind } from './durable-outbox.ts';

export const JOURNAL_VERSION = 1;
const HEADER_KEY = 'tether-outbox';

/**
 * The file operations the outbox uses, so tests can inject failures (ENOSPC, EIO): running as
 * root ignores permission bits, so an unwritable file is no way to test this.
 */
export interface OutboxFs {
  openSync(path: string, flags: number, mode?: number): number;
  writeSync(fd: number, buffer: Buffer, offset: number, length: number): number;
  fsyncSync(fd: number): void;
  closeSync(fd: number): void;
  renameSync(from: string, to: string): void;
  unlinkSync(path: string): void;
  /** Throws ENOENT when there is no journal yet. */
  readFileSync(path: string): Buffer;
  mkdirSync(path: string, options: { recursive: true }): unknown;
}

export const nodeFs: OutboxFs = {
  openSync: (path, flags, mode) => fs.openSync(path, flags, mode),
  writeSync: (fd, buffer, offset, length) => fs.writeSync(fd, buffer, offset, length),
  fsyncSync: (fd) => fs.fsyncSync(fd),
  closeSync: (fd) => fs.closeSync(fd),
  renameSync: (from, to) => fs.renameSync(from, to),
  unlinkSync: (path) => fs.unlinkSync(path),
  readFileSync: (path) => fs.readFileSync(path),
  mkdirSync: (path, options) => fs.mkdirSync(path, options),
};

/** Writes all of `buffer`, looping over short writes. */
export function writeAll(io: OutboxFs, fd: number, buffer: Buffer): void {
  let offset = 0;
  while (offset < buffer.length) {
    const n = io.writeSync(fd, buffer, offset, buffer.length - offset);
    if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    offset += n;
  }
}

export type JournalRecord =
  | { type: 'entry'; entry: OutboxEntry }
  | { type: 'ack'; id: number }
  | { type: 'drop'; id: number; reason: string }
  | { type: 'coalesced'; id: number; by: number };

export function encodeHeader(nextId: number): string {
  return JSON.stringify({ [HEADER_KEY]: JOURNAL_VERSION, next: nextId });
}

export function encodeEntry(e: OutboxEntry): string {
  return JSON.stringify({
    id: e.id,
    at: e.enqueuedAt,
    kind: e.kind,
    qos: e.qos,
    retain: e.retain,
    topic: e.topic,
    payload: e.payload.toString('base64'),
  });
}

export function encodeAck(id: number): string {
  return `{"ack":${id}}`;
}

export function encodeDrop(id: number, reason: string): string {
  return JSON.stringify({ drop: id, reason });
}

export function encodeCoalesced(id: number, by: number): string {
  return `{"coalesced":${id},"by":${by}}`;
}

/** The file is not an outbox journal this code can read; it must not be overwritten. */
export class JournalFormatError extends Error {
  override name = 'JournalFormatError';
}

export interface ParsedJournal {
  /** From the header (1 for an empty file); replay still raises it past every id seen. */
  headerNext: number;
  records: JournalRecord[];
  /** 1 when the last line was cut short (crash mid-append), else 0. */
  torn: number;
  /** Unparseable or malformed lines before the last one. */
  corrupt: number;
  /** Line numbers (1-based) of the corrupt lines, at most 10, for the log. */
  corruptLines: number[];
}

const KINDS: ReadonlySet<string> = new Set<OutboxKind>(['telemetry', 'state', 'other']);

function isId(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) > 0;
}

function decodeRecord(obj: unknown): JournalRecord | undefined {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return undefined;
  const r = obj as Record<string, unknown>;
  if ('id' in r) {
    const { id, at, kind, qos, retain, topic, payload } = r;
    if (!isId(id) || typeof at !== 'number' || typeof kind !== 'string' || !KINDS.has(kind)) return undefined;
    if ((qos !== 0 && qos !== 1) || typeof retain !== 'boolean' || typeof topic !== 'string') return undefined;
    if (typeof payload !== 'string') return undefined;
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

function tryParse(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

/** Parses a whole journal file. Throws JournalFormatError for a file that is not one. */
export function parseJournal(data: Buffer): ParsedJournal {
  const result: ParsedJournal = { headerNext: 1, records: [], torn: 0, corrupt: 0, corruptLines: [] };
  if (data.length === 0) return result;
  const lines = data.toString('utf8').split('\n');
  // With a final '\n' the last element is ''; otherwise it is the unterminated last line.
  const last = lines.length - 1;
  const unterminated = lines[last] !== '';

  const header = tryParse(lines[0]);
  if (header === undefined || typeof header !== 'object' || header === null || !(HEADER_KEY in header)) {
    // Only the header itself, cut short: the crash hit while the file was being created.
    if (last === 0 && unterminated) {
      result.torn = 1;
      return result;
    }
    throw new JournalFormatError('not a tether outbox journal (no header line)');
  }
  const h = header as Record<string, unknown>;
  if (h[HEADER_KEY] !== JOURNAL_VERSION) {
    throw new JournalFormatError(`unsupported outbox journal version ${JSON.stringify(h[HEADER_KEY])}`);
  }
  if (isId(h.next)) result.headerNext = h.next;

  for (let i = 1; i <= last; i++) {
    const line = lines[i];
    if (line === '') continue;
    const parsed = tryParse(line);
    const record = parsed === undefined ? undefined : decodeRecord(parsed);
    if (record) {
      result.records.push(record);
    } else if (i === last && unterminated && parsed === undefined) {
      result.torn = 1;
    } else {
      result.corrupt++;
      if (result.corruptLines.length < 10) result.corruptLines.push(i + 1);
    }
  }
  return result;
}
