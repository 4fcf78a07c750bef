import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  crc8,
  decodeBody,
  encodeFrame,
  FrameSplitter,
  frameFromPayload,
  MessageType,
  pongMessage,
  readPongBody,
  type Message,
  type PongFields,
  type SplitterEvent,
  type SplitterSink,
} from '../../shared/protocol/index.ts';
import { heartbeatArb } from '../support/protocol-arbitraries.ts';

/** PONGs and BEATs: both take the fast path. */
const pongArb = fc.oneof(heartbeatArb('pong'), heartbeatArb('beat'));

const fields = (): PongFields => ({ beat: true, seq: -1, uptimeMs: -1, bootId: -1, flags: -1, leaseRemainingMs: -1 });

/** A frame's body (between F0 and F7) placed at `offset` in a larger buffer, as the splitter holds it. */
function bodyAt(frame: Uint8Array, offset: number): { bytes: Uint8Array; start: number; end: number } {
  const body = frame.subarray(1, frame.length - 1);
  const bytes = new Uint8Array(offset + body.length + 3).fill(0x55);
  bytes.set(body, offset);
  return { bytes, start: offset, end: offset + body.length };
}

/** Collects what pushTo() hands over as the events push() returns (PONGs as their message). */
function collector(withPong: boolean): { sink: SplitterSink; events: SplitterEvent[] } {
  const events: SplitterEvent[] = [];
  const sink: SplitterSink = {
    message: (message) => events.push({ kind: 'message', message }),
    firmata: (bytes) => events.push({ kind: 'firmata', bytes }),
    error: (error, raw) => events.push({ kind: 'error', error, raw }),
  };
  if (withPong) sink.pong = (f) => events.push({ kind: 'message', message: pongMessage(f) });
  return { sink, events };
}

describe('PONG fast path (readPongBody)', () => {
  it('reads every valid PONG and BEAT as decodeBody does, wherever its body sits in the buffer', () => {
    fc.assert(
      fc.property(pongArb, fc.nat(8), (pong, offset) => {
        const { bytes, start, end } = bodyAt(encodeFrame(pong), offset);
        const out = fields();
        expect(readPongBody(bytes, start, end, out)).toBe(true);
        const decoded = decodeBody(bytes.subarray(start, end));
        expect(decoded).toEqual({ ok: true, message: pong });
        expect(pongMessage(out)).toEqual(pong);
      }),
    );
  });

  it('accepts a mutated PONG body exactly when decodeBody accepts it as a PONG, with the same fields', () => {
    fc.assert(
      fc.property(pongArb, fc.array(fc.tuple(fc.nat(30), fc.integer({ min: 0, max: 0xff })), { minLength: 1, maxLength: 3 }), (pong, edits) => {
        const body = Array.from(encodeFrame(pong).subarray(1, -1));
        for (const [i, v] of edits) body[i % body.length] = v;
        const bytes = Uint8Array.from(body);
        const out = fields();
        const fast = readPongBody(bytes, 0, bytes.length, out);
        const slow = decodeBody(bytes, { from: 'device' });
        const slowIsPong = slow.ok && (slow.message.type === 'pong' || slow.message.type === 'beat');
        expect(fast).toBe(slowIsPong);
        if (fast && slow.ok) expect(pongMessage(out)).toEqual(slow.message);
      }),
    );
  });

  it('takes a PONG whose CRC is right but whose u32 top septet is out of range as no PONG (decodeBody reports it)', () => {
    const payload = [1, 0, /* uptime */ 0, 0, 0, 0, 0x10, /* boot */ 1, 0, 0, 0, 0, /* flags */ 0, /* lease */ 0, 0, 0, 0, 0];
    const frame = frameFromPayload(MessageType.PONG, payload);
    const body = frame.subarray(1, -1);
    expect(crc8(body, 1, body.length - 2)).toBe(body[body.length - 2]! | (body[body.length - 1]! << 7));
    expect(readPongBody(body, 0, body.length, fields())).toBe(false);
    const slow = decodeBody(body);
    expect(slow.ok).toBe(false);
    if (!slow.ok) expect(slow.error.code).toBe('out-of-range');
  });

  it('is no PONG for other message types, even of the same length', () => {
    const ping = encodeFrame({ type: 'ping', seq: 1, leaseMs: 0 });
    expect(readPongBody(ping, 1, ping.length - 1, fields())).toBe(false);
    const config = encodeFrame({ type: 'config', config: { watchdogMs: 0, policy: 'stay', hostTimeoutMs: 0, sleepMs: 0, awakeMs: 0 } });
    expect(readPongBody(config, 1, config.length - 1, fields())).toBe(false);
  });
});

describe('FrameSplitter.pushTo', () => {
  const pieces = fc.array(
    fc.oneof(
      pongArb.map((p) => Array.from(encodeFrame(p))),
      fc.constant(Array.from(encodeFrame({ type: 'awake', sleptMs: 5, wakeCauses: ['timer'] }))),
      fc.array(fc.integer({ min: 0, max: 0xff }), { maxLength: 6 }), // Firmata, garbage, stray F0/F7
    ),
    { maxLength: 12 },
  );

  it('hands over the same events in the same order as push(), PONGs through the fast path, however the stream is cut', () => {
    fc.assert(
      fc.property(pieces, fc.array(fc.nat(40), { maxLength: 6 }), fc.boolean(), (parts, cuts, withPong) => {
        const stream = Uint8Array.from(parts.flat());
        const reference = new FrameSplitter({ from: 'device' });
        const fast = new FrameSplitter({ from: 'device' });
        const { sink, events } = collector(withPong);
        const expected: SplitterEvent[] = [];
        // Chunks at the given cut points, each inside a larger reused buffer as the socket's read buffer is.
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        let from = 0;
        const shared = new Uint8Array(stream.length + 16);
        for (const to of [...points, stream.length]) {
          const chunk = stream.subarray(from, to);
          expected.push(...reference.push(chunk));
          shared.fill(0xf7);
          shared.set(chunk);
          fast.pushTo(shared, chunk.length, sink);
          from = to;
        }
        expected.push(...reference.flush());
        events.push(...fast.flush());
        expect(events).toEqual(expected);
      }),
    );
  });

  it('a sink that feeds the splitter again from a callback gets the inner bytes first, as they came later', () => {
    const s = new FrameSplitter({ from: 'device' });
    const pong = (seq: number): Message => ({ type: 'pong', seq, uptimeMs: 1, bootId: 2, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 });
    const seen: string[] = [];
    let answered = false;
    const sink: SplitterSink = {
      message: (m) => seen.push(m.type),
      pong: (f) => {
        seen.push(`pong ${f.seq}`);
        if (!answered) {
          answered = true; // a fake board answering a write at once
          s.pushTo(Uint8Array.from([...encodeFrame(pong(7)), 0x90, 0x01, 0x02]), 3 + encodeFrame(pong(7)).length, sink);
        }
      },
      firmata: (b) => seen.push(`firmata ${Array.from(b).join(',')}`),
      error: (e) => seen.push(`error ${e.code}`),
    };
    const stream = Uint8Array.from([...encodeFrame(pong(1)), 0xf9, 0x02, 0x05, ...encodeFrame(pong(2))]);
    s.pushTo(stream, stream.length, sink);
    expect(seen).toEqual(['pong 1', 'pong 7', 'firmata 144,1,2', 'firmata 249,2,5', 'pong 2']);
    expect(s.bufferedBytes).toBe(0);
  });

  it('a splitter reading host traffic never takes the PONG fast path (PONG is unknown-type there)', () => {
    const s = new FrameSplitter({ from: 'host' });
    const { sink, events } = collector(true);
    const frame = encodeFrame({ type: 'pong', seq: 1, uptimeMs: 1, bootId: 2, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 });
    s.pushTo(frame, frame.length, sink);
    expect(events).toHaveLength(1);
    expect(events[0]!.kind).toBe('error');
    if (events[0]!.kind === 'error') expect(events[0]!.error.code).toBe('unknown-type');
  });
});
