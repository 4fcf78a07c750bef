import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { encodeFrame, KeepaliveFrameParser, type Message, type SplitterEvent } from '../../shared/protocol/index.ts';

async function collect(chunks: Uint8Array[], parser = new KeepaliveFrameParser()): Promise<SplitterEvent[]> {
  const events: SplitterEvent[] = [];
  await pipeline(Readable.from(chunks), parser, async (source: AsyncIterable<SplitterEvent>) => {
    for await (const event of source) events.push(event);
  });
  return events;
}

const pong: Message = {
  type: 'pong',
  seq: 42,
  uptimeMs: 123456,
  bootId: 9,
  leaseActive: true,
  sleepPending: false,
  stateValid: true,
  hostWasLost: false,
  leaseRemainingMs: 2500,
};
const awake: Message = { type: 'awake', sleptMs: 8000, wakeCauses: ['timer'] };
const stateData: Message = { type: 'state-data', offset: 4, data: Uint8Array.from([0xde, 0xad, 0xbe, 0xef]) };

describe('KeepaliveFrameParser', () => {
  it('turns a chunked serial stream into message, error and firmata events', async () => {
    const badCrc = encodeFrame(awake);
    badCrc[5] ^= 0x01;
    const stream = Buffer.concat([
      Buffer.from([0xf9, 0x02, 0x05]), // REPORT_VERSION
      Buffer.from(encodeFrame(pong)),
      Buffer.from([0xf0, 0x79, 0x02, 0x05, 0x55, 0x00, 0xf7]), // REPORT_FIRMWARE
      Buffer.from(badCrc),
      Buffer.from(encodeFrame(awake)),
      Buffer.from([0xe3, 0x7f, 0x01]), // ANALOG_MESSAGE
      Buffer.from(encodeFrame(stateData)),
    ]);
    // Awkward chunk boundaries, including inside frames and right after F0.
    const cuts = [1, 4, 5, 17, 27, 29, 30, 44, 45, 60, stream.length - 1];
    const chunks: Uint8Array[] = [];
    let prev = 0;
    for (const cut of [...cuts, stream.length]) {
      chunks.push(new Uint8Array(stream.subarray(prev, cut)));
      prev = cut;
    }

    const events = await collect(chunks);
    const messages = events.flatMap((e) => (e.kind === 'message' ? [e.message] : []));
    const errors = events.flatMap((e) => (e.kind === 'error' ? [e] : []));
    const firmata = Buffer.concat(events.flatMap((e) => (e.kind === 'firmata' ? [e.bytes] : [])));

    expect(messages).toEqual([pong, awake, stateData]);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.error.code).toBe('bad-crc');
    expect(Buffer.from(errors[0]!.raw)).toEqual(Buffer.from(badCrc));
    expect([...firmata]).toEqual([0xf9, 0x02, 0x05, 0xf0, 0x79, 0x02, 0x05, 0x55, 0x00, 0xf7, 0xe3, 0x7f, 0x01]);
    // Order is kept: the bad frame's error comes between the two frames around it.
    expect(events.map((e) => (e.kind === 'message' ? e.message.type : e.kind)).filter((k) => k !== 'firmata')).toEqual([
      'pong',
      'error',
      'awake',
      'state-data',
    ]);
  });

  it('reports a frame cut off by the end of the stream on flush', async () => {
    const frame = encodeFrame(pong);
    const events = await collect([frame.subarray(0, 10)]);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ kind: 'error', error: { code: 'not-sysex' } });
  });

  it('passes the sender filter to its splitter', async () => {
    const events = await collect([encodeFrame({ type: 'ping', seq: 1, leaseMs: 1000 }), encodeFrame(pong)], new KeepaliveFrameParser({ from: 'device' }));
    expect(events).toEqual([
      expect.objectContaining({ kind: 'error', error: expect.objectContaining({ code: 'unknown-type' }) }),
      { kind: 'message', message: pong },
    ]);
  });

  it('emits objects in readable object mode and can be written to directly', async () => {
    const parser = new KeepaliveFrameParser();
    expect(parser.readableObjectMode).toBe(true);
    expect(parser.writableObjectMode).toBe(false);
    const got = new Promise<SplitterEvent>((resolve) => parser.once('data', resolve));
    parser.write(Buffer.from(encodeFrame(awake)));
    expect(await got).toEqual({ kind: 'message', message: awake });
    parser.end();
  });
});
