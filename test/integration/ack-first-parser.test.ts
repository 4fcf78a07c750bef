import mqtt from 'mqtt';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AckFirstParser } from '../../host/mqtt/ack-first-parser.ts';
import { BrokerSession } from '../../host/mqtt/broker-session.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { waitFor } from '../support/wait-for.ts';

// A BrokerSession's mqtt.js client reads Mosquitto's PUBACKs with the AckFirstParser (mqtt.js
// asks mqtt-packet's module for its parser at each connect); a plain mqtt.js client in the
// same process keeps mqtt-packet's.
describe('AckFirstParser in a BrokerSession against Mosquitto', () => {
  let broker: RunningMosquitto;
  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  for (const protocolVersion of [5, 4] as const) {
    it(`MQTT ${protocolVersion === 5 ? '5' : '3.1.1'}: 300 QoS 1 publishes at once, each acknowledged; the PUBACKs read by the AckFirstParser; another client keeps mqtt-packet's`, async () => {
      const parse = vi.spyOn(AckFirstParser.prototype, 'parse');
      const s = new BrokerSession({ url: broker.url, clientId: `ack-first-${protocolVersion}-${process.pid}`, protocolVersion, keepaliveSec: 10, backoff: { initialMs: 100, maxMs: 500 } });
      const watcher = await mqtt.connectAsync(broker.url, { clientId: `ack-watch-${protocolVersion}-${process.pid}`, protocolVersion, reconnectPeriod: 0 });
      try {
        const topic = `tether-test/ack-first/${protocolVersion}`;
        const got = new Set<string>();
        watcher.on('message', (_t, payload) => got.add(payload.toString()));
        await watcher.subscribeAsync(`${topic}/#`, { qos: 1 });
        const callsBeforeWatcher = parse.mock.calls.length;
        expect(callsBeforeWatcher).toBe(0); // the watcher's own client: mqtt-packet's parser
        s.start();
        await once(s, 'up');
        await Promise.all(Array.from({ length: 300 }, (_, i) => s.publish(`${topic}/${i}`, `m${i}`, { qos: 1, retain: false })));
        await waitFor(() => got.size === 300, { timeoutMs: 10_000, what: 'all 300 at the watcher', detail: () => String(got.size) });
        const parsers = new Set(parse.mock.contexts as AckFirstParser[]);
        expect(parsers.size).toBe(1);
        const [parser] = parsers;
        expect(parser!.stats.direct).toBeGreaterThanOrEqual(300);
        expect(parser!.stats.general).toBeGreaterThanOrEqual(1); // the CONNACK at least
      } finally {
        parse.mockRestore();
        await s.stop();
        await watcher.endAsync(true);
      }
    });
  }
});
