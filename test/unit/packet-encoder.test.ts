import { generate, parser, type Packet } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { encodePacket, userPropertiesBlock } from '../../host/mqtt/packet-encoder.ts';

/** What mqtt-packet (the encoder mqtt.js uses) makes of the same packet. */
const reference = (packet: Packet, protocolVersion: number) => generate(packet, { protocolVersion } as never);

function parse(bytes: Buffer, protocolVersion: number): Packet {
  const p = parser({ protocolVersion });
  const got: Packet[] = [];
  p.on('packet', (packet) => got.push(packet));
  p.on('error', (err) => {
    throw err;
  });
  p.parse(bytes);
  expect(got).toHaveLength(1);
  return got[0]!;
}

const owner = Object.freeze({ 'tether-owner': 'gw-1', 'tether-instance': '7f9c2f4e-8d7b-4c8e-9a52-1f0d3b6c2a11', 'tether-epoch': '12' });

describe('packet encoder (PUBLISH and PUBACK in one buffer)', () => {
  const payloads: Array<string | Buffer> = ['', 'ready', 'ünïcødé ✓', 'x'.repeat(127), 'y'.repeat(128), 'z'.repeat(16_400), Buffer.from([0, 1, 2, 255]), Buffer.alloc(0)];
  const topics = ['homie/5/sim-1/$state', 'homeassistant/sensor/sim-1/sim-1_tether_rtt/config', 'a/ü/✓', ''];

  it('encodes every PUBLISH shape a session sends exactly as mqtt-packet does (3.1.1 and 5, QoS 0-2, dup, retain, payload and topic sizes)', () => {
    let compared = 0;
    for (const protocolVersion of [4, 5])
      for (const qos of [0, 1, 2] as const)
        for (const retain of [false, true])
          for (const dup of [false, true])
            for (const topic of topics)
              for (const payload of payloads)
                for (const properties of protocolVersion === 5 ? [undefined, {}, { userProperties: owner }, { userProperties: undefined }] : [undefined]) {
                  const packet = { cmd: 'publish', topic, payload, qos, retain, dup, messageId: qos ? 40_000 + compared : 0, properties } as Packet;
                  const mine = encodePacket(packet, protocolVersion);
                  expect(mine, JSON.stringify({ protocolVersion, qos, topic, properties })).not.toBeNull();
                  expect(mine!.equals(reference(packet, protocolVersion))).toBe(true);
                  compared++;
                }
    expect(compared).toBe(2 * 3 * 2 * 2 * topics.length * payloads.length * 2.5);
  });

  it('a PUBLISH with user properties parses back to its topic, payload, id and every property (array values as repeated pairs)', () => {
    const user = Object.freeze({ a: '1', many: ['x', 'y', 'zé'] });
    const packet = { cmd: 'publish', topic: 't/1', payload: 'hello', qos: 1, retain: true, dup: false, messageId: 513, properties: { userProperties: user } } as Packet;
    const bytes = encodePacket(packet, 5)!;
    expect(bytes.equals(reference(packet, 5))).toBe(true);
    const back = parse(bytes, 5) as Packet & { topic: string; payload: Buffer; messageId: number; retain: boolean; properties: { userProperties: unknown } };
    expect(back.topic).toBe('t/1');
    expect(back.payload.toString()).toBe('hello');
    expect(back.messageId).toBe(513);
    expect(back.retain).toBe(true);
    expect(back.properties.userProperties).toEqual({ a: '1', many: ['x', 'y', 'zé'] });
  });

  it('makes a frozen owner block once and reuses it; an unfrozen one (it could change) goes to mqtt-packet', () => {
    const a = encodePacket({ cmd: 'publish', topic: 't', payload: '1', qos: 0, retain: false, dup: false, properties: { userProperties: owner } } as Packet, 5)!;
    const b = encodePacket({ cmd: 'publish', topic: 't', payload: '1', qos: 0, retain: false, dup: false, properties: { userProperties: owner } } as Packet, 5)!;
    expect(a.equals(b)).toBe(true);
    expect(encodePacket({ cmd: 'publish', topic: 't', payload: '1', qos: 0, retain: false, dup: false, properties: { userProperties: { ...owner } } } as Packet, 5)).toBeNull();
  });

  it("an owner's block, kept as long as its claim, is memory of its own: not a slice pinning a shared 8 KiB pool slab", () => {
    const small = Buffer.allocUnsafe(16); // what a pooled allocation of this size looks like
    expect(small.buffer.byteLength).toBeGreaterThan(small.length);
    const block = userPropertiesBlock(owner)!;
    expect(block.length).toBeLessThan(200);
    expect(block.buffer.byteLength).toBe(block.length);
  });

  it('leaves what it does not encode to mqtt-packet: other properties, bad ids, other packet types', () => {
    const publish = { cmd: 'publish', topic: 't', payload: 'p', qos: 1, retain: false, dup: false, messageId: 1 };
    expect(encodePacket({ ...publish, properties: { contentType: 'text/plain' } } as Packet, 5)).toBeNull();
    expect(encodePacket({ ...publish, properties: { topicAlias: 3 } } as Packet, 5)).toBeNull();
    expect(encodePacket({ ...publish, messageId: undefined } as unknown as Packet, 4)).toBeNull();
    expect(encodePacket({ ...publish, messageId: 70_000 } as Packet, 4)).toBeNull();
    expect(encodePacket({ ...publish, payload: 42 } as unknown as Packet, 4)).toBeNull();
    expect(encodePacket({ cmd: 'pingreq' } as Packet, 4)).toBeNull();
    expect(encodePacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a', qos: 1 }] } as Packet, 5)).toBeNull();
  });

  it('encodes a successful PUBACK as mqtt-packet does (MQTT 5 omits a Success reason code, §3.4.2.1), and leaves others to it', () => {
    for (const protocolVersion of [4, 5]) {
      const ack = { cmd: 'puback', messageId: 0xbeef, reasonCode: 0 } as Packet;
      const mine = encodePacket(ack, protocolVersion)!;
      expect(mine.equals(reference(ack, protocolVersion))).toBe(true);
      expect((parse(mine, protocolVersion) as Packet & { messageId: number }).messageId).toBe(0xbeef);
    }
    expect(encodePacket({ cmd: 'puback', messageId: 1, reasonCode: 0x10 } as Packet, 5)).toBeNull();
    expect(encodePacket({ cmd: 'puback', messageId: 1, reasonCode: 0, properties: { reasonString: 'x' } } as Packet, 5)).toBeNull();
  });
});
