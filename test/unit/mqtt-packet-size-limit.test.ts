import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { MqttPacketSizeLimit } from '../../host/mqtt/mqtt-packet-size-limit.ts';

function run(limit: number, chunks: Buffer[]): Promise<{ out: Buffer; error: Error | null }> {
  return new Promise((resolve) => {
    const t = new MqttPacketSizeLimit(limit);
    const out: Buffer[] = [];
    t.on('data', (c: Buffer) => out.push(c));
    t.on('error', (error) => resolve({ out: Buffer.concat(out), error }));
    t.on('end', () => resolve({ out: Buffer.concat(out), error: null }));
    for (const c of chunks) t.write(c);
    t.end();
  });
}

const publish = (payloadBytes: number) =>
  mqttPacket.generate({ cmd: 'publish', topic: 'homie/5/a/b/c/set', payload: Buffer.alloc(payloadBytes, 0x61), qos: 0, retain: false, dup: false });

describe('MqttPacketSizeLimit', () => {
  it('passes packets up to the limit unchanged, however the stream is cut', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }), async (sizes, cuts) => {
        const stream = Buffer.concat(sizes.map(publish));
        const chunks: Buffer[] = [];
        let at = 0;
        for (let k = 0; at < stream.length; k++) {
          const n = cuts[k % cuts.length]!;
          chunks.push(stream.subarray(at, at + n));
          at += n;
        }
        const { out, error } = await run(4096, chunks);
        expect(error).toBeNull();
        expect(out.equals(stream)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('fails on the header of a packet over the limit, before its body arrives', async () => {
    const big = publish(10 * 1024 * 1024);
    const { out, error } = await run(65536, [publish(10), big.subarray(0, 8)]);
    expect(error?.message).toMatch(/MQTT packet of 10485\d+ bytes refused \(at most 65536\)/);
    expect(out.length).toBe(publish(10).length);
  });

  it('fails on a malformed remaining length', async () => {
    const { error } = await run(65536, [Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])]);
    expect(error?.message).toMatch(/malformed/);
  });
});
