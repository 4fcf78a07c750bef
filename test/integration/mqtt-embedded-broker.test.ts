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

  it('speaks MQTT 3.1.1 only: a session fixed to MQTT 5 is refused with one ERROR saying what to set, and never comes up', async () => {
    const broker = await startEmbeddedBroker();
    const logger = new RecordingLogger();
    const session = new BrokerSession({ url: broker.url, clientId: 'v5-on-aedes', protocolVersion: 5, logger, backoff: { initialMs: 50, maxMs: 100 } });
    let ups = 0;
    session.on('up', () => ups++);
    try {
      session.start();
      // (With protocolVersion 'auto', the default, it would use 3.1.1: mqtt-version-negotiation.test.ts.)
      const error = await waitFor(() => logger.records.find((r) => r.level === 'error'), { what: 'the refusal logged at error' });
      expect(error.msg).toMatch(/does not accept MQTT 5.*Fix: set broker\.protocolVersion to 'auto'/);
      expect(ups).toBe(0);
      expect(broker.protocolVersion).toBe(4);
    } finally {
      await session.stop();
      await broker.close();
    }
  });
});
