import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BrokerSession, type BrokerSessionOptions, type MessageInfo } from '../../host/mqtt/broker-session.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../host/mqtt/embedded-broker.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { activeResources, leakedSince } from '../support/handles.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { waitFor } from '../support/wait-for.ts';

/** A broker the suite runs against, with a way to crash it and bring it back on the same port. */
interface BrokerFixture {
  url: string;
  port: number;
  /** Gone without a goodbye (Mosquitto: SIGKILL; Aedes: its listener and every socket closed). */
  crash(): Promise<void>;
  /** Back on the same port. */
  revive(): Promise<void>;
  close(): Promise<void>;
}

async function mosquittoFixture(): Promise<BrokerFixture> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-mqtt-test-'));
  const broker = await startMosquitto({ persistenceDir: dir });
  return {
    url: broker.url,
    port: broker.port,
    crash: () => broker.kill9(),
    revive: () => broker.restart(),
    close: async () => {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function aedesFixture(): Promise<BrokerFixture> {
  let broker: EmbeddedBroker | null = await startEmbeddedBroker();
  const port = broker.port;
  return {
    url: broker.url,
    port,
    crash: async () => {
      await broker?.close();
      broker = null;
    },
    revive: async () => {
      broker = await startEmbeddedBroker({ port });
    },
    close: async () => {
      await broker?.close();
      broker = null;
    },
  };
}

const brokers: Array<{ name: string; protocolVersion: 4 | 5; start: () => Promise<BrokerFixture> }> = [
  { name: 'Mosquitto 2 (MQTT 5)', protocolVersion: 5, start: mosquittoFixture },
  { name: 'embedded Aedes (MQTT 3.1.1)', protocolVersion: 4, start: aedesFixture },
  { name: 'Mosquitto 2 (MQTT 3.1.1)', protocolVersion: 4, start: mosquittoFixture },
];

let idCounter = 0;
const uniqueId = (what: string) => `${what}-${process.pid}-${Date.now().toString(36)}-${idCounter++}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The next `event` from `emitter` (its arguments), or an error after `ms`. */
function nextEvent<T extends unknown[]>(emitter: NodeJS.EventEmitter, event: string, ms: number): Promise<T> {
  return (once(emitter, event, { signal: AbortSignal.timeout(ms) }) as Promise<T>).catch((err: unknown) => {
    throw new Error(`no '${event}' event within ${ms} ms`, { cause: err });
  });
}

/** Collects what a raw mqtt.js client receives. */
function collect(client: MqttClient) {
  const got: Array<{ topic: string; payload: string; retain: boolean }> = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), retain: packet.retain }));
  return got;
}

describe.each(brokers)('BrokerSession against $name', ({ name, protocolVersion, start }) => {
  let broker: BrokerFixture;
  const cleanups: Array<() => unknown> = [];

  beforeAll(async () => {
    broker = await start();
  });
  afterAll(async () => {
    await broker?.close();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function session(options: Partial<BrokerSessionOptions> = {}): BrokerSession {
    const s = new BrokerSession({
      url: broker.url,
      clientId: uniqueId('session'),
      protocolVersion,
      keepaliveSec: 10,
      pingRespTimeoutMs: 1000,
      backoff: { initialMs: 100, maxMs: 500 },
      ...options,
    });
    cleanups.push(() => s.stop());
    return s;
  }

  async function observer(url = broker.url): Promise<MqttClient> {
    const client = await mqtt.connectAsync(url, { clientId: uniqueId('observer'), protocolVersion, reconnectPeriod: 0 });
    cleanups.push(() => client.endAsync(true));
    return client;
  }

  it('No Local (MQTT 5): a subscription does not hand back what the session itself publishes, only others\' and the retained ones; 3.1.1 has no such option and hears its own', async () => {
    const base = `tether-test/${uniqueId('nl')}`;
    const other = await observer();
    // Retained before the session subscribes: handed back on subscribing whoever sent it.
    await other.publishAsync(`${base}/kept`, 'retained', { qos: 1, retain: true });
    const s = session();
    void s.subscribe(`${base}/#`, 1, { noLocal: true });
    expect(s.subscriptionList).toEqual([{ topic: `${base}/#`, qos: 1, noLocal: true }]);
    const messages: string[] = [];
    s.on('message', (t, payload) => messages.push(`${t.slice(base.length + 1)}=${payload.toString()}`));
    s.start();
    await nextEvent(s, 'up', 3000);
    await waitFor(() => messages.includes('kept=retained'), { timeoutMs: 3000, what: 'the retained message' });
    await s.publish(`${base}/own`, 'mine', { qos: 1, retain: false });
    await other.publishAsync(`${base}/other`, 'theirs', { qos: 1 });
    await waitFor(() => messages.includes('other=theirs'), { timeoutMs: 3000, what: "the other client's message" });
    // The session's own publish went out before the other's: had it come back, it would be here by now.
    if (protocolVersion === 5) expect(messages).toEqual(['kept=retained', 'other=theirs']);
    else expect(messages).toEqual(['kept=retained', 'own=mine', 'other=theirs']);
    await other.publishAsync(`${base}/kept`, '', { qos: 1, retain: true });
    await s.stop();
  });

  it('connects, subscribes and gets its own publishes back (QoS 0 and 1); refuses to publish when not connected', async () => {
    const topic = `tether-test/${uniqueId('rt')}/in`;
    const s = session({ subscriptions: [{ topic, qos: 1 }] });
    await expect(s.publish(topic, 'early', { qos: 1, retain: false })).rejects.toThrow(/not connected/);
    const messages: Array<[string, string, MessageInfo]> = [];
    s.on('message', (t, payload, info) => messages.push([t, payload.toString(), info]));
    s.start();
    const [up] = await nextEvent<[{ sessionPresent: boolean }]>(s, 'up', 3000);
    expect(up.sessionPresent).toBe(false);
    expect(s.connected).toBe(true);
    await s.publish(topic, 'one', { qos: 1, retain: false });
    await s.publish(topic, Buffer.from('two'), { qos: 0, retain: false });
    await waitFor(() => messages.length === 2, { timeoutMs: 2000, what: 'both messages' });
    expect(messages).toEqual([
      [topic, 'one', { retain: false, qos: 1, dup: false }],
      [topic, 'two', { retain: false, qos: 0, dup: false }],
    ]);
    expect(s.stats).toMatchObject({ connects: 1, reconnects: 0, halfOpenDetections: 0 });
    await s.stop();
    expect(s.connected).toBe(false);
    await expect(s.publish(topic, 'late', { qos: 0, retain: false })).rejects.toThrow(/not connected/);
  });

  it('subscribes a fleet\'s worth of topics, as a list while connected and remembered at the next connect, in SUBSCRIBEs the embedded broker\'s 256 KiB packet limit lets through', async () => {
    // 5,000 filters of ~60 bytes: ~300 KB, over the embedded broker's limit (DEFAULT_MAX_PACKET_BYTES, 256 KiB)
    // in one SUBSCRIBE, which is what a gateway's resubscribe of ~3,000 boards' topics was. Aedes
    // takes seconds over thousands of filters on a loaded machine: generous deadlines.
    const base = `tether-test/${uniqueId('many')}`;
    const topics = Array.from({ length: 5000 }, (_, i) => `${base}/board-${String(i).padStart(6, '0')}/owner`);
    const sample = [topics[0]!, topics[2345]!, topics[4999]!];
    const pub = await observer();
    for (const t of sample) await pub.publishAsync(t, `retained ${t}`, { qos: 1, retain: true });
    const heard = (s: BrokerSession) => {
      const got = new Set<string>();
      s.on('message', (t, payload) => payload.toString() === `retained ${t}` && got.add(t));
      return got;
    };
    // A list subscribed on a connected session: resolves once every SUBACK is in.
    const live = session();
    const liveGot = heard(live);
    live.start();
    await nextEvent(live, 'up', 5000);
    await live.subscribe(topics, 1);
    await waitFor(() => sample.every((t) => liveGot.has(t)), { timeoutMs: 60_000, what: 'the retained messages of the listed topics' });
    expect(live.connected).toBe(true);
    // Remembered before the connect: they go out with it.
    const later = session();
    const laterGot = heard(later);
    await later.subscribe(topics, 1);
    later.start();
    await waitFor(() => sample.every((t) => laterGot.has(t)), { timeoutMs: 60_000, what: 'the retained messages after the connect\'s resubscribe' });
    expect(later.stats).toMatchObject({ connects: 1, reconnects: 0 });
    for (const t of sample) await pub.publishAsync(t, '', { qos: 1, retain: true });
  }, 180_000);

  it('keeps no table for topic aliases it never sends (Mosquitto offers 10): publishes to more topics than that all arrive, each with its topic', async () => {
    const base = `tether-test/${uniqueId('alias')}`;
    const watcher = await observer();
    const got = collect(watcher);
    await watcher.subscribeAsync(`${base}/#`, { qos: 1 });
    const s = session();
    s.start();
    await nextEvent(s, 'up', 3000);
    const mqttjs = (s as unknown as { client: { topicAliasSend?: unknown } }).client;
    expect(mqttjs.topicAliasSend).toBeUndefined();
    const topics = Array.from({ length: 25 }, (_, i) => `${base}/t${i % 12}`);
    for (const [i, topic] of topics.entries()) await s.publish(topic, String(i), { qos: 1, retain: false });
    await waitFor(() => got.length === topics.length, { timeoutMs: 3000, what: 'every publish' });
    expect(got.map((m) => [m.topic, m.payload])).toEqual(topics.map((t, i) => [t, String(i)]));
  });

  it('kill(): the broker publishes the Last Will', async () => {
    const willTopic = `tether-test/${uniqueId('will')}/$state`;
    const watcher = await observer();
    const got = collect(watcher);
    await watcher.subscribeAsync(willTopic, { qos: 1 });
    const s = session({ will: { topic: willTopic, payload: 'lost', qos: 1, retain: false } });
    s.start();
    await nextEvent(s, 'up', 3000);
    const down = nextEvent<[string]>(s, 'down', 2000);
    s.kill();
    expect((await down)[0]).toMatch(/killed/);
    await waitFor(() => got.length > 0, { timeoutMs: 3000, what: 'the will' });
    expect(got).toEqual([{ topic: willTopic, payload: 'lost', retain: false }]);
    expect(s.connected).toBe(false);
  });

  it('stop(): publishes the final message, then DISCONNECTs, so no will follows', async () => {
    const stateTopic = `tether-test/${uniqueId('stop')}/$state`;
    const watcher = await observer();
    const got = collect(watcher);
    await watcher.subscribeAsync(stateTopic, { qos: 1 });
    const s = session({ will: { topic: stateTopic, payload: 'lost', qos: 1, retain: true } });
    s.start();
    await nextEvent(s, 'up', 3000);
    await s.publish(stateTopic, 'ready', { qos: 1, retain: true });
    const downReasons: string[] = [];
    s.on('down', (r) => downReasons.push(r));
    await s.stop({ finalPublish: { topic: stateTopic, payload: 'disconnected', qos: 1, retain: true } });
    await sleep(500); // a fixed wait on purpose: time for a (wrong) will to arrive, which must not
    expect(got.map((m) => m.payload)).toEqual(['ready', 'disconnected']);
    expect(downReasons).toEqual(['stopped']);
    // The retained state is the final message, not the will.
    const late = await observer();
    const lateGot = collect(late);
    await late.subscribeAsync(stateTopic, { qos: 1 });
    await waitFor(() => lateGot.length > 0, { timeoutMs: 2000, what: 'the retained state' });
    expect(lateGot).toEqual([{ topic: stateTopic, payload: 'disconnected', retain: true }]);
    await late.publishAsync(stateTopic, '', { qos: 1, retain: true }); // clear the retained message
  });

  it('persistent session: a QoS 1 message sent while it was away is delivered on reconnect with the same clientId', async () => {
    const clientId = uniqueId('persistent');
    const topic = `tether-test/${clientId}/set`;
    const first = session({ clientId });
    first.start();
    const [up1] = await nextEvent<[{ sessionPresent: boolean }]>(first, 'up', 3000);
    expect(up1.sessionPresent).toBe(false);
    await first.subscribe(topic, 1);
    await first.stop();

    const publisher = await observer();
    await publisher.publishAsync(topic, 'while-away', { qos: 1 });

    // No subscriptions option: only the broker's session can deliver this.
    const second = session({ clientId });
    const messages: Array<[string, string]> = [];
    second.on('message', (t, payload) => messages.push([t, payload.toString()]));
    second.start();
    const [up2] = await nextEvent<[{ sessionPresent: boolean }]>(second, 'up', 3000);
    expect(up2.sessionPresent).toBe(true);
    await waitFor(() => messages.length > 0, { timeoutMs: 3000, what: 'the queued message' });
    expect(messages).toEqual([[topic, 'while-away']]);
  });

  it(
    'detects a half-open link within keepalive + pingRespTimeout of the last packet received, and reconnects when the link heals',
    async () => {
      const keepaliveSec = 2;
      const pingRespTimeoutMs = 1000;
      const boundMs = keepaliveSec * 1000 + pingRespTimeoutMs;
      const proxy = await startTcpProxy(broker.port);
      cleanups.push(() => proxy.close());
      const topic = `tether-test/${uniqueId('ho')}/in`;
      const s = session({
        url: `mqtt://127.0.0.1:${proxy.port}`,
        keepaliveSec,
        pingRespTimeoutMs,
        backoff: { initialMs: 100, maxMs: 400 },
        subscriptions: [{ topic, qos: 1 }],
      });
      const falseAlarms: unknown[] = [];
      s.on('half-open', (info) => falseAlarms.push(info));
      s.start();
      await nextEvent(s, 'up', 3000);
      // Healthy but idle for longer than the bound: PINGREQ/PINGRESP keep it up, no false alarm.
      await sleep(boundMs + 300); // a fixed wait on purpose: the point is that this time passes
      expect(falseAlarms).toEqual([]);
      expect(s.stats.lastPingRttMs).not.toBeNull();
      expect(s.stats.lastPingRttMs!).toBeLessThan(pingRespTimeoutMs);
      s.removeAllListeners('half-open');
      // A PUBACK is the last packet that gets through: measure from when it arrived.
      await s.publish(topic, 'before', { qos: 1, retain: false });
      const lastReceivedAt = performance.now();
      proxy.blackhole(true);

      let detectedAt = 0;
      let silentForMs = -1;
      s.once('half-open', (info) => {
        detectedAt = performance.now();
        silentForMs = info.silentForMs;
        proxy.blackhole(false); // heal before the reconnect attempt
      });
      const down = nextEvent<[string]>(s, 'down', boundMs + 2000);
      const reconnected = nextEvent(s, 'up', boundMs + 6000);
      const [reason] = await down;
      const measuredMs = detectedAt - lastReceivedAt;
      console.log(
        `[${name}] half-open detected ${measuredMs.toFixed(0)} ms after the last packet received ` +
          `(probe: silent ${silentForMs.toFixed(0)} ms); our bound keepalive + pingRespTimeout = ${boundMs} ms; mqtt.js 1.5 x keepalive = ${1.5 * keepaliveSec * 1000} ms`,
      );
      expect(reason).toMatch(/half-open/);
      expect(detectedAt).toBeGreaterThan(0);
      // Not a false alarm: the PINGREQ is due a keepalive after our last packet, its answer T later.
      expect(measuredMs).toBeGreaterThan(boundMs - 300);
      expect(measuredMs).toBeLessThanOrEqual(boundMs + 250); // timer scheduling slack
      expect(silentForMs).toBeLessThanOrEqual(boundMs + 250);
      expect(s.stats.halfOpenDetections).toBe(1);

      await reconnected;
      expect(s.stats).toMatchObject({ connects: 2, reconnects: 1, halfOpenDetections: 1 });
      const messages: string[] = [];
      s.on('message', (_t, payload) => messages.push(payload.toString()));
      await s.publish(topic, 'after', { qos: 1, retain: false });
      await waitFor(() => messages.includes('after'), { timeoutMs: 2000, what: 'traffic after healing' });
    },
    15_000,
  );

  it(
    'reconnects with bounded exponential backoff after the broker crashes and comes back',
    async () => {
      const logger = new RecordingLogger();
      const topic = `tether-test/${uniqueId('crash')}/in`;
      const s = session({ logger, backoff: { initialMs: 100, maxMs: 400 }, subscriptions: [{ topic, qos: 1 }] });
      s.start();
      await nextEvent(s, 'up', 3000);
      const down = nextEvent<[string]>(s, 'down', 3000);
      await broker.crash();
      await down;
      expect(s.connected).toBe(false);
      await expect(s.publish(topic, 'x', { qos: 1, retain: false })).rejects.toThrow(/not connected/);
      const retriesLogged = () => logger.records.filter((r) => r.msg?.startsWith('MQTT reconnect in')).length;
      await waitFor(() => retriesLogged() >= 3, { timeoutMs: 5000, what: 'three failed reconnect attempts' });
      // Listen first: the session may well connect before revive() has seen the port open.
      const up = nextEvent(s, 'up', 5000);
      await broker.revive();
      await up;
      expect(s.stats).toMatchObject({ connects: 2, reconnects: 1 });

      const retries = logger.records
        .filter((r) => r.msg?.startsWith('MQTT reconnect in'))
        .map((r) => r.obj as { attempt: number; delayMs: number });
      expect(retries.length).toBeGreaterThanOrEqual(3);
      retries.forEach((r, i) => {
        expect(r.attempt).toBe(i + 1);
        expect(r.delayMs).toBeGreaterThanOrEqual(10); // the floor: 10% of initialMs
        expect(r.delayMs).toBeLessThanOrEqual(Math.min(400, 100 * 2 ** i));
      });

      // Subscribed again (or still, with a persisted session): a message from someone else arrives.
      const messages: string[] = [];
      s.on('message', (_t, payload) => messages.push(payload.toString()));
      const publisher = await observer();
      await publisher.publishAsync(topic, 'after-restart', { qos: 1 });
      await waitFor(() => messages.includes('after-restart'), { timeoutMs: 3000, what: 'a message after the restart' });

      // Backoff was reset by the successful connect: the next outage starts at attempt 1 again.
      const before = logger.records.length;
      const down2 = nextEvent(s, 'down', 3000);
      await broker.crash();
      await down2;
      await waitFor(() => logger.records.slice(before).some((r) => r.msg?.startsWith('MQTT reconnect in')), { timeoutMs: 2000, what: 'a retry' });
      const next = logger.records.slice(before).find((r) => r.msg?.startsWith('MQTT reconnect in'))!.obj as { attempt: number };
      expect(next.attempt).toBe(1);
      const up2 = nextEvent(s, 'up', 5000);
      await broker.revive();
      await up2;
    },
    15_000,
  );

  it('stop() and kill() leave no timers or sockets behind, also while reconnecting', async () => {
    const baseline = activeResources();
    const s = session();
    s.start();
    await nextEvent(s, 'up', 3000);
    await s.publish('tether-test/leak', 'x', { qos: 1, retain: false });
    await s.stop();
    expect(await leakedSince(baseline)).toEqual({});

    const k = session();
    k.start();
    await nextEvent(k, 'up', 3000);
    k.kill();
    expect(await leakedSince(baseline)).toEqual({});

    // Nobody listening: the session keeps retrying; stop() must end that too.
    const deadPort = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const retrying = new RecordingLogger();
    const r = session({ url: `mqtt://127.0.0.1:${deadPort}`, backoff: { initialMs: 50, maxMs: 100 }, logger: retrying });
    r.start();
    await waitFor(() => retrying.records.filter((rec) => rec.msg?.startsWith('MQTT reconnect in')).length >= 2, { what: 'two reconnect attempts to a dead port' });
    expect(r.connected).toBe(false);
    await r.stop();
    expect(await leakedSince(baseline)).toEqual({});
  });
});
