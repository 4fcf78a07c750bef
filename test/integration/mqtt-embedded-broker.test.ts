import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait-for.ts';
import { BrokerSession } from '../../host/mqtt/broker-session.ts';
import { startEmbeddedBroker } from '../../host/mqtt/embedded-broker.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { activeResources, leakedSince } from '../support/handles.ts';

describe('startEmbeddedBroker', () => {
  it('listens on a loopback port, counts clients, and close() drops them and leaves no handles', async () => {
    const baseline = activeResources();
    const broker = await startEmbeddedBroker({ port: 0 });
    expect(broker.url).toBe(`mqtt://127.0.0.1:${broker.port}`);
    expect(broker.port).toBeGreaterThan(0);
    expect(broker.clientCount()).toBe(0);
    const a = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
    const b = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
    expect(broker.clientCount()).toBe(2);
    await a.endAsync();
    await waitFor(() => broker.clientCount() === 1, { what: 'one client connected' });
    const closed = new Promise<void>((resolve) => b.once('close', () => resolve()));
    await broker.close();
    await closed; // the broker dropped the remaining client
    await b.endAsync(true);
    await broker.close(); // idempotent
    expect(await leakedSince(baseline)).toEqual({});
  });

  it('refuses a second broker on a port in use with the listen error', async () => {
    const broker = await startEmbeddedBroker();
    try {
      await expect(startEmbeddedBroker({ port: broker.port })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await broker.close();
    }
  });

  it('speaks MQTT 3.1.1 only: an MQTT 5 session is refused with a hint, retries with backoff, and never comes up', async () => {
    const broker = await startEmbeddedBroker();
    const logger = new RecordingLogger();
    const session = new BrokerSession({ url: broker.url, clientId: 'v5-on-aedes', protocolVersion: 5, logger, backoff: { initialMs: 50, maxMs: 100 } });
    let ups = 0;
    session.on('up', () => ups++);
    try {
      session.start();
      await waitFor(() => logger.records.filter((r) => r.msg?.startsWith('MQTT reconnect in')).length >= 2, { what: 'two reconnect attempts logged' });
      const retry = logger.records.find((r) => r.msg?.startsWith('MQTT reconnect in'))!.obj as { reason: string };
      expect(retry.reason).toMatch(/protocol version.*set protocolVersion 4/i);
      expect(ups).toBe(0);
      expect(broker.protocolVersion).toBe(4);
    } finally {
      await session.stop();
      await broker.close();
    }
  });
});
