// The Mosquitto the soak and the durable-delivery tests run must keep what it saved across a
// kill -9: a persistent subscriber's session, its subscription and the QoS 1 messages queued for
// it. Mosquitto does not create its persistence folder; when it was missing, every save failed
// ("Error saving in-memory database ... No such file or directory", logged at error only) and the
// broker came back from kill -9 empty: the soak counted what it then dropped as lost.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { waitFor } from '../support/wait-for.ts';

describe('startMosquitto with persistence', () => {
  let broker: RunningMosquitto | undefined;
  let root: string | undefined;
  afterEach(async () => {
    await broker?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('keeps a persistent session and the messages queued for it across kill -9, in a folder that did not exist yet', async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'tether-mosq-persist-'));
    const dir = path.join(root, 'not-created-yet');
    broker = await startMosquitto({ persistenceDir: dir });
    const topic = 'persist/check';
    const session = { clientId: `persist-sub-${process.pid}`, clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 0 };

    const sub = await mqtt.connectAsync(broker.url, session);
    await sub.subscribeAsync(topic, { qos: 1 });
    await sub.endAsync(); // offline: what follows is queued for it
    const pub = await mqtt.connectAsync(broker.url, { clientId: `persist-pub-${process.pid}`, reconnectPeriod: 0 });
    for (let i = 1; i <= 5; i++) await pub.publishAsync(topic, `msg-${i}`, { qos: 1 });
    await pub.endAsync();

    // Mosquitto sends PUBACK before it saves (src/loop.c saves later in the same loop pass): wait
    // until the last message is on disk, so the kill below tests persistence, not that race.
    const db = path.join(dir, 'mosquitto.db');
    await waitFor(() => existsSync(db) && readFileSync(db).includes('msg-5'), { timeoutMs: 10_000, what: 'Mosquitto to save the queued messages to mosquitto.db' });
    await broker.kill9();
    await broker.restart();

    const back = mqtt.connect(broker.url, { ...session, resubscribe: false });
    const received: string[] = [];
    back.on('message', (_t, payload) => received.push(payload.toString()));
    const [connack] = (await new Promise((resolve, reject) => {
      back.once('connect', (c) => resolve([c]));
      back.once('error', reject);
    })) as [{ sessionPresent: boolean }];
    try {
      expect(connack.sessionPresent).toBe(true);
      await waitFor(() => received.length >= 5, { timeoutMs: 10_000, what: 'the queued messages after the restart', detail: () => received.join(', ') });
      expect(received).toEqual(['msg-1', 'msg-2', 'msg-3', 'msg-4', 'msg-5']);
    } finally {
      await back.endAsync();
    }
  });
});
