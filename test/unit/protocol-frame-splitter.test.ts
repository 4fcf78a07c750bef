import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameSplitter, MAX_BODY, type Message, type SplitterEvent } from '../../shared/protocol/index.ts';

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const ping: Message = { type: 'ping', seq: 300, leaseMs: 5000 };
const PING = encodeFrame(ping);
const hello: Message = { type: 'hello-request' };
const HELLO_REQ = encodeFrame(hello);
const REPORT_VERSION = bytes(0xf9, 0x02, 0x05);
const REPORT_FIRMWARE = bytes(0xf0, 0x79, 0x02, 0x05, 0x41, 0x00, 0xf7);

const firmata = (...values: number[]): SplitterEvent => ({ kind: 'firmata', bytes: bytes(...values) });
const msg = (message: Message): SplitterEvent => ({ kind: 'message', message });

describe('FrameSplitter', () => {
  it('separates a tether frame from surrounding Firmata traffic in one push', () => {
    const s = new FrameSplitter();
    expect(s.push(bytes(...REPORT_VERSION, ...PING, 0x90, 0x01, 0x00))).toEqual([
      firmata(0xf9, 0x02, 0x05),
      msg(ping),
      firmata(0x90, 0x01, 0x00),
    ]);
    expect(s.bufferedBytes).toBe(0);
  });

  it('passes other sysex frames, REPORT_FIRMWARE included, through unchanged', () => {
    const s = new FrameSplitter();
    expect(s.push(bytes(...REPORT_FIRMWARE, ...HELLO_REQ))).toEqual([firmata(...REPORT_FIRMWARE), msg(hello)]);
  });

  it('reassembles a frame split byte by byte', () => {
    const s = new FrameSplitter();
    const events: SplitterEvent[] = [];
    for (const b of PING) {
      events.push(...s.push(bytes(b)));
      if (events.length === 0) expect(s.bufferedBytes).toBeGreaterThan(0);
    }
    expect(events).toEqual([msg(ping)]);
  });

  it('holds an undecided F0 across pushes and passes it on when it is not tether', () => {
    const s = new FrameSplitter();
    expect(s.push(bytes(0x01, 0xf0))).toEqual([firmata(0x01)]);
    expect(s.bufferedBytes).toBe(1);
    expect(s.push(bytes(0x79, 0x00, 0xf7))).toEqual([firmata(0xf0, 0x79, 0x00, 0xf7)]);
  });

  it('abandons a partial frame at a new F0 and decodes the next one', () => {
    const s = new FrameSplitter();
    const events = s.push(bytes(...PING.subarray(0, 6), ...HELLO_REQ));
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({ kind: 'error', error: { code: 'not-sysex' }, raw: PING.subarray(0, 6) });
    expect(events[1]).toEqual(msg(hello));
  });

  it('abandons a partial frame at any other command byte, which stays Firmata', () => {
    const s = new FrameSplitter();
    const events = s.push(bytes(...PING.subarray(0, 5), 0xf9, 0x02, 0x05));
    expect(events).toEqual([
      expect.objectContaining({ kind: 'error', error: expect.objectContaining({ code: 'not-sysex' }) }),
      firmata(0xf9, 0x02, 0x05),
    ]);
  });

  it('reports a frame with a bad CRC with its raw bytes and keeps going', () => {
    const bad = Uint8Array.from(PING);
    bad[4] ^= 1;
    const s = new FrameSplitter();
    const events = s.push(bytes(...bad, ...HELLO_REQ));
    expect(events[0]).toMatchObject({ kind: 'error', error: { code: 'bad-crc' }, raw: bad });
    expect(events[1]).toEqual(msg(hello));
  });

  it('drops an over-long frame as too-long and resyncs at F7', () => {
    const s = new FrameSplitter();
    const long = bytes(0xf0, 0x0d, ...new Array(200).fill(0x11), 0xf7);
    const events = s.push(bytes(...long, 0xc0, 0x01, ...PING));
    expect(events).toHaveLength(3);
    expect(events[0]).toMatchObject({ kind: 'error', error: { code: 'too-long' } });
    if (events[0]!.kind !== 'error') throw new Error('unreachable');
    expect(events[0].raw).toEqual(long.subarray(0, 1 + MAX_BODY + 1));
    expect(events[1]).toEqual(firmata(0xc0, 0x01));
    expect(events[2]).toEqual(msg(ping));
    expect(s.bufferedBytes).toBe(0);
  });

  it('accepts a 64-byte body but not a 65-byte one', () => {
    const at = (n: number) => bytes(0xf0, 0x0d, 0x01, ...new Array(n - 2).fill(0), 0xf7);
    const [sixtyFour] = new FrameSplitter().push(at(MAX_BODY));
    expect(sixtyFour).toMatchObject({ kind: 'error', error: { code: 'bad-crc' } });
    const [sixtyFive] = new FrameSplitter().push(at(MAX_BODY + 1));
    expect(sixtyFive).toMatchObject({ kind: 'error', error: { code: 'too-long' } });
  });

  it('resyncs after an over-long frame at a command byte without F7', () => {
    const s = new FrameSplitter();
    const events = s.push(bytes(0xf0, 0x0d, ...new Array(70).fill(1), 0xf9, 0x02, 0x05, ...PING));
    expect(events.map((e) => e.kind)).toEqual(['error', 'firmata', 'message']);
    expect(events[1]).toEqual(firmata(0xf9, 0x02, 0x05));
  });

  it('flush passes on a pending F0 and reports a truncated frame', () => {
    const a = new FrameSplitter();
    expect(a.push(bytes(0x00, 0xf0))).toEqual([firmata(0x00)]);
    expect(a.flush()).toEqual([firmata(0xf0)]);
    const b = new FrameSplitter();
    expect(b.push(PING.subarray(0, 8))).toEqual([]);
    expect(b.flush()).toEqual([
      { kind: 'error', error: expect.objectContaining({ code: 'not-sysex' }), raw: PING.subarray(0, 8) },
    ]);
    expect(b.bufferedBytes).toBe(0);
    expect(b.push(PING)).toEqual([msg(ping)]);
  });

  it('filters by sender when asked', () => {
    const s = new FrameSplitter({ from: 'device' });
    const [event] = s.push(PING);
    expect(event).toMatchObject({ kind: 'error', error: { code: 'unknown-type', messageType: 0x02 } });
  });

  it('copies bytes out: events do not alias the pushed chunk', () => {
    const s = new FrameSplitter();
    const chunk = bytes(0x90, 0x01, 0x00);
    const [event] = s.push(chunk);
    chunk.fill(0);
    expect(event).toEqual(firmata(0x90, 0x01, 0x00));
  });
});
