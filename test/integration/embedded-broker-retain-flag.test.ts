import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedBroker } from '../../host/mqtt/embedded-broker.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { waitFor } from '../support/wait-for.ts';

// MQTT 3.1.1 [MQTT-3.3.1-9]: the server sets RETAIN to 1 only on retained messages it sends
// because of a new SUBSCRIBE, and to 0 on everything sent for an established subscription.
// Aedes (the embedded broker) queued messages for a persistent session with the publisher's flag
// and sent them so at the next connect: a retained /set published while the gateway was away, or
// in flight at a cut, then reached the gateway with RETAIN (ignored as retained) instead of as the
// command it is. Mosquitto 2 (the reference here) clears it. Both are run the same way.

interface Broker {
  url: string;
  stop(): Promise<void>;
}

const brokers = [
  { name: 'embedded (Aedes)', start: async (): Promise<Broker> => {
    const b = await startEmbeddedBroker();
    return { url: b.url, stop: () => b.close() };
  } },
  { name: 'mosquitto', start: async (): Promise<Broker> => {
    const b = await startMosquitto();
    return { url: b.url, stop: () => b.stop() };
  } },
];

type Seen = { topic: string; payload: string; retain: boolean };

describe.each(brokers)('RETAIN on deliveries to a persistent MQTT 3.1.1 session ($name)', ({ start }) => {
  let broker: Broker;
  let publisher: mqtt.MqttClient;
  beforeAll(async () => {
    broker = await start();
    publisher = await mqtt.connectAsync(broker.url, { clientId: `pub-${process.pid}`, protocolVersion: 4, reconnectPeriod: 0 });
  });
  afterAll(async () => {
    await publisher?.endAsync();
    await broker?.stop();
  });

  /** A clean: false subscriber recording every delivery (as the gateway's sessions are). */
  const connect = async (clientId: string, seen: Seen[], { ack = true } = {}) => {
    const client = mqtt.connect(broker.url, { clientId, clean: false, protocolVersion: 4, reconnectPeriod: 0, resubscribe: false });
    // No callback: mqtt.js then never sends the PUBACK (a message in flight at a cut).
    if (!ack) client.handleMessage = () => {};
    client.on('message', (topic, payload, packet) => seen.push({ topic, payload: payload.toString(), retain: packet.retain }));
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    return client;
  };

  it('a retained publish queued while the session was away arrives with RETAIN 0; the SUBSCRIBE replay with RETAIN 1', async () => {
    const seen: Seen[] = [];
    let sub = await connect('away', seen);
    await sub.subscribeAsync('away/#', { qos: 1 });
    await sub.endAsync();
    await publisher.publishAsync('away/set', 'queued', { qos: 1, retain: true });
    await publisher.publishAsync('away/plain', 'plain', { qos: 1 });

    sub = await connect('away', seen);
    await waitFor(() => seen.length >= 2, { what: 'the two queued messages' });
    await sub.subscribeAsync('away/#', { qos: 1 });
    await waitFor(() => seen.length >= 3, { what: 'the replay of the retained message' });
    await sub.endAsync();
    expect(seen).toEqual([
      { topic: 'away/set', payload: 'queued', retain: false },
      { topic: 'away/plain', payload: 'plain', retain: false },
      { topic: 'away/set', payload: 'queued', retain: true },
    ]);
  });

  it('a retained publish in flight at a cut is resent at the next connect with RETAIN 0', async () => {
    const seen: Seen[] = [];
    let sub = await connect('cut', seen, { ack: false });
    await sub.subscribeAsync('cut/#', { qos: 1 });
    await publisher.publishAsync('cut/set', 'in-flight', { qos: 1, retain: true });
    await waitFor(() => seen.length === 1, { what: 'the live delivery (never acknowledged)' });
    sub.stream.destroy();
    await sub.endAsync(true);

    sub = await connect('cut', seen);
    await waitFor(() => seen.length === 2, { what: 'the resend of the unacknowledged message' });
    await sub.endAsync();
    expect(seen).toEqual([
      { topic: 'cut/set', payload: 'in-flight', retain: false },
      { topic: 'cut/set', payload: 'in-flight', retain: false },
    ]);
  });
});
