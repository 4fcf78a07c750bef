import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeWholePackets } from '../../host/mqtt/whole-packet-writer.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { waitFor, within } from '../support/wait-for.ts';

/** The socket's write() calls while `work` runs (the real mqtt.js client's own stream). */
async function countWrites(client: MqttClient, work: () => Promise<unknown>): Promise<number> {
  const stream = (client as unknown as { stream: { write: (...args: unknown[]) => boolean } }).stream;
  const write = stream.write;
  let calls = 0;
  stream.write = function (this: unknown, ...args: unknown[]) {
    calls++;
    return write.apply(this, args);
  };
  try {
    await work();
  } finally {
    stream.write = write;
  }
  return calls;
}

describe('whole-packet writer on real mqtt.js and Mosquitto', () => {
  let broker: RunningMosquitto;
  const clients: MqttClient[] = [];
  const connect = async (id: string, patched: boolean) => {
    const client = mqtt.connect(broker.url, { clientId: `${id}-${process.pid}`, protocolVersion: 5, reconnectPeriod: 0 });
    if (patched) writeWholePackets(client);
    clients.push(client);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    return client;
  };
  // A board's start-up burst: QoS 1, retained, with the owner's user properties (gateway-device.ts).
  const properties = { userProperties: { 'tether-owner': 'gw', 'tether-instance': 'a1b2c3', 'tether-epoch': '7' } };
  const burst = (client: MqttClient, prefix: string) =>
    Promise.all(Array.from({ length: 19 }, (_, i) => client.publishAsync(`${prefix}/p${i}`, `value ${i} ${'x'.repeat(i * 40)}`, { qos: 1, retain: true, properties })));

  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker?.stop();
  });

  it('writes each packet as one buffer (19 publishes: 19 writes, where stock mqtt.js makes over 200), and the broker gets them whole', async () => {
    const watcher = await connect('watch', false);
    const got: Array<{ topic: string; payload: string; retain: boolean; user: unknown }> = [];
    watcher.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), retain: packet.retain, user: packet.properties?.userProperties }));
    await watcher.subscribeAsync(['whole/#', 'stock/#'], { qos: 1 });

    const stock = await connect('stock', false);
    const stockWrites = await countWrites(stock, () => burst(stock, 'stock'));
    const whole = await connect('whole', true);
    const wholeWrites = await countWrites(whole, () => burst(whole, 'whole'));
    expect(wholeWrites).toBe(19);
    expect(stockWrites).toBeGreaterThan(200);

    await waitFor(() => got.length === 38, { timeoutMs: 10_000, what: 'both bursts at the watcher', detail: () => String(got.length) });
    // Byte for byte what stock mqtt.js sends: the same topics, payloads and user properties.
    const strip = (prefix: string) => got.filter((m) => m.topic.startsWith(`${prefix}/`)).map((m) => ({ ...m, topic: m.topic.slice(prefix.length) }));
    expect(strip('whole')).toEqual(strip('stock'));
    expect(strip('whole')[3]).toEqual({ topic: '/p3', payload: `value 3 ${'x'.repeat(120)}`, retain: false, user: properties.userProperties });
  });

  it('a packet mqtt-packet cannot encode fails the connection, as mqtt.js itself does', async () => {
    const client = await connect('bad', true);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    const errors: Error[] = [];
    // mqtt.js hears its socket's error and closes (it passes on only errors with a code).
    (client as unknown as { stream: NodeJS.EventEmitter }).stream.on('error', (err: Error) => errors.push(err));
    // Past mqtt.js's own checks: straight to the writer, as a bad packet from inside would come.
    (client as unknown as { _writePacket: (p: object) => void })._writePacket({ cmd: 'publish', topic: 42, payload: 'x', qos: 0 });
    await within(closed, { timeoutMs: 10_000, what: "the client's close" });
    expect(errors.map((e) => e.message).join(' ')).toMatch(/Invalid topic/);
    expect(client.connected).toBe(false);
  });
});
