import mqttPacket, { generate, type Packet } from 'mqtt-packet';
import { describe, expect, it, vi } from 'vitest';
import { AckFirstParser } from '../../host/mqtt/ack-first-parser.ts';

type Outcome = { packets: Packet[]; errors: string[] };

/** What a parser emits for `chunks`, fed one after the other. */
function run(parser: object, chunks: Buffer[]): Outcome {
  const p = parser as NodeJS.EventEmitter & { parse(b: Buffer): number };
  const out: Outcome = { packets: [], errors: [] };
  p.on('packet', (packet: Packet) => out.packets.push(packet));
  p.on('error', (e: Error) => out.errors.push(e.message));
  for (const chunk of chunks) p.parse(chunk);
  return out;
}

const reference = (protocolVersion: number, chunks: Buffer[]) => run(mqttPacket.parser({ protocolVersion } as never), chunks);
const mine = (protocolVersion: number, chunks: Buffer[]) => run(new AckFirstParser({ protocolVersion }, (o) => mqttPacket.parser(o as never)), chunks);

/** What a board session hears from a broker: acknowledgements mostly, and a bit of everything else. */
function stream(protocolVersion: number): Buffer {
  const v5 = protocolVersion === 5;
  const packets: object[] = [
    { cmd: 'connack', sessionPresent: true, returnCode: 0, reasonCode: 0, properties: v5 ? { topicAliasMaximum: 10, receiveMaximum: 100 } : undefined },
    { cmd: 'suback', messageId: 1, granted: [1, 0], properties: v5 ? {} : undefined },
    ...Array.from({ length: 20 }, (_, i) => ({ cmd: 'puback', messageId: [2, 255, 256, 65535, 300][i % 5]! + (i % 5 === 3 ? 0 : i) })),
    { cmd: 'pingresp' },
    { cmd: 'publish', topic: 'tether/sim-1/set/13', payload: Buffer.from('{"value":1}'), qos: 1, messageId: 7, retain: false, properties: v5 ? { userProperties: { a: 'b' } } : undefined },
    { cmd: 'publish', topic: 'homie/5/sim-1/$state', payload: Buffer.alloc(300, 0x61), qos: 0, retain: true },
    { cmd: 'pubrel', messageId: 9 },
    { cmd: 'puback', messageId: 10 },
    { cmd: 'pingresp' },
  ];
  if (v5) {
    packets.push({ cmd: 'puback', messageId: 11, reasonCode: 16 }); // No matching subscribers (length 3)
    packets.push({ cmd: 'puback', messageId: 12, reasonCode: 0, properties: { reasonString: 'ok', userProperties: { x: 'y' } } });
    packets.push({ cmd: 'puback', messageId: 13, reasonCode: 0 });
    packets.push({ cmd: 'disconnect', reasonCode: 0x8e, properties: { reasonString: 'taken over' } });
  }
  return Buffer.concat(packets.map((p) => generate(p as Packet, { protocolVersion } as never)));
}

describe('AckFirstParser (PUBACK and PINGRESP read directly, the rest by mqtt-packet)', () => {
  for (const protocolVersion of [4, 5]) {
    it(`emits what mqtt-packet's parser emits, packet for packet, however the stream is cut (MQTT ${protocolVersion === 5 ? '5' : '3.1.1'})`, () => {
      const bytes = stream(protocolVersion);
      const whole = reference(protocolVersion, [bytes]);
      expect(whole.errors).toEqual([]);
      expect(whole.packets.length).toBeGreaterThan(25);
      expect(whole.packets.filter((p) => p.cmd === 'puback').length).toBeGreaterThanOrEqual(21);
      // In one chunk, byte by byte, and cut at every single place into two.
      expect(mine(protocolVersion, [bytes])).toEqual(whole);
      expect(mine(protocolVersion, [...bytes].map((b) => Buffer.from([b])))).toEqual(whole);
      for (let cut = 1; cut < bytes.length; cut++) {
        const got = mine(protocolVersion, [bytes.subarray(0, cut), bytes.subarray(cut)]);
        expect(got, `cut at ${cut}`).toEqual(whole);
      }
      // Field order too, as the packet objects mqtt-packet makes (mqtt.js logs and stores them).
      const pubacks = mine(protocolVersion, [bytes]).packets.filter((p) => p.cmd === 'puback');
      expect(Object.keys(pubacks[0]!)).toEqual(Object.keys(whole.packets.find((p) => p.cmd === 'puback')!));
    });
  }

  it('reads a PUBACK itself and leaves the rest to mqtt-packet', () => {
    const made: string[] = [];
    const parser = new AckFirstParser({ protocolVersion: 5 }, (o) => {
      made.push('general');
      return mqttPacket.parser(o as never);
    });
    // As Mosquitto sends a successful one (no Reason Code), and as mqtt-packet writes it (Reason Code, no properties).
    const out = run(parser, [Buffer.from([0x40, 0x02, 0x00, 0x05]), generate({ cmd: 'puback', messageId: 6 } as Packet, { protocolVersion: 5 } as never)]);
    expect(out.packets).toEqual([
      { cmd: 'puback', retain: false, qos: 0, dup: false, length: 2, topic: null, payload: null, messageId: 5, reasonCode: 0 },
      { cmd: 'puback', retain: false, qos: 0, dup: false, length: 4, topic: null, payload: null, messageId: 6, reasonCode: 0 },
    ]);
    expect(made).toEqual([]);
    run(parser, [generate({ cmd: 'suback', messageId: 7, granted: [0] } as Packet, { protocolVersion: 5 } as never)]);
    expect(made).toEqual(['general']);
  });

  it('reports bad bytes as mqtt-packet does: reserved flags on a PUBACK, a Remaining Length of five bytes, an invalid Reason Code', () => {
    for (const bad of [Buffer.from([0x42, 0x02, 0x00, 0x01]), Buffer.from([0x40, 0xff, 0xff, 0xff, 0xff, 0x01]), Buffer.from([0x40, 0x03, 0x00, 0x01, 0x05])]) {
      for (const protocolVersion of [4, 5]) {
        const expected = reference(protocolVersion, [bad]);
        if (protocolVersion === 5 || bad[1] !== 0x03) expect(expected.errors.length, bad.toString('hex')).toBe(1);
        expect(mine(protocolVersion, [bad])).toEqual(expected);
      }
    }
  });

  it('keeps only the unfinished packet, not the chunk it came in', () => {
    const parser = new AckFirstParser({ protocolVersion: 4 }, (o) => mqttPacket.parser(o as never));
    const chunk = Buffer.alloc(64 * 1024);
    const puback = generate({ cmd: 'puback', messageId: 3 } as Packet, { protocolVersion: 4 } as never);
    chunk.set(puback, 0);
    chunk.set(puback.subarray(0, 1), 4); // the next PUBACK's first byte ends the chunk
    const packets: Packet[] = [];
    parser.on('packet', (p: Packet) => packets.push(p));
    expect(parser.parse(chunk.subarray(0, 5))).toBe(1);
    expect((parser as unknown as { rest: Buffer[] }).rest[0]!.buffer).not.toBe(chunk.buffer);
    parser.parse(puback.subarray(1));
    expect(packets.map((p) => p.messageId)).toEqual([3, 3]);
  });

  it('puts a large packet that comes in many reads together once, when it is all there', () => {
    const publish = generate({ cmd: 'publish', topic: 'tether/big', payload: Buffer.alloc(1024 * 1024, 7), qos: 0, retain: true } as Packet, { protocolVersion: 5 } as never);
    const reads = Array.from({ length: Math.ceil(publish.length / 65536) }, (_, i) => publish.subarray(i * 65536, (i + 1) * 65536));
    expect(reads.length).toBeGreaterThan(15);
    const concat = vi.spyOn(Buffer, 'concat');
    try {
      const got = mine(5, reads);
      expect(got.errors).toEqual([]);
      expect(got.packets).toHaveLength(1);
      expect((got.packets[0] as { payload?: Buffer }).payload?.equals(Buffer.alloc(1024 * 1024, 7))).toBe(true); // not toEqual: byte by byte, seconds
      expect(concat.mock.calls.filter((c) => (c[0] as Buffer[]).length > 1).length).toBe(1);
    } finally {
      concat.mockRestore();
    }
  });
});
