import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { ConfigFailureLog } from '../../host/mqtt/broker-errors.ts';
import { BrokerSession, type BrokerSessionOptions } from '../../host/mqtt/broker-session.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../host/mqtt/embedded-broker.ts';
import { ProtocolNegotiation } from '../../host/mqtt/protocol-negotiation.ts';
import { openBrokerProbe } from '../../host/probe/probe-connections.ts';
import { startAedesProcess, type RunningAedes } from '../support/aedes-process.ts';
import { freePort } from '../support/free-port.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { waitFor, within } from '../support/wait-for.ts';

// MQTT version negotiation against brokers as they are: Aedes (the embedded broker) speaks
// 3.1.1 only and answers an MQTT 5 CONNECT with CONNACK "unacceptable protocol version";
// Mosquitto 2 speaks 5 (it has no setting to restrict a listener to 3.1.1, so it stands for a
// broker that accepts 5). RabbitMQ 3.10, which closes the connection without a CONNACK, is in
// broker-cluster.test.ts.

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));
let counter = 0;
const uniqueId = (what: string) => `${what}-${process.pid}-${counter++}`;

describe('MQTT version negotiation (BrokerSession)', () => {
  let aedes: EmbeddedBroker;
  let mosquitto: RunningMosquitto;
  const cleanups: Array<() => unknown> = [];

  beforeAll(async () => {
    aedes = await startEmbeddedBroker();
    mosquitto = await startMosquitto();
  });
  afterAll(async () => {
    await aedes?.close();
    await mosquitto?.stop();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function session(options: Partial<BrokerSessionOptions> & { url: BrokerSessionOptions['url'] }): BrokerSession {
    const s = new BrokerSession({ clientId: uniqueId('neg'), keepaliveSec: 10, backoff: { initialMs: 50, maxMs: 200 }, ...options });
    cleanups.push(() => s.stop());
    return s;
  }

  const attempts = (log: RecordingLogger, version: 5 | 4) => log.records.filter((r) => r.msg === 'MQTT connect attempt' && (r.obj as { protocolVersion?: number }).protocolVersion === version).length;

  it('auto against Aedes: one refused MQTT 5 attempt for the whole gateway, then 3.1.1, said once at info; messages flow', async () => {
    const log = new RecordingLogger();
    const negotiation = new ProtocolNegotiation('auto');
    const topic = `tether-test/${uniqueId('t')}`;
    const first = session({ url: aedes.url, negotiation, logger: log, subscriptions: [{ topic, qos: 1 }] });
    const got: string[] = [];
    first.on('message', (_t, payload) => got.push(payload.toString()));
    first.start();
    await waitFor(() => first.connected, { timeoutMs: 5000, what: 'the first session to connect' });
    expect(first.protocolVersion).toBe(4);
    const second = session({ url: aedes.url, negotiation, logger: log });
    second.start();
    await waitFor(() => second.connected, { timeoutMs: 5000, what: 'the second session to connect' });
    expect(second.protocolVersion).toBe(4);
    expect(attempts(log, 5)).toBe(1); // the second session went straight to 3.1.1
    const infos = log.records.filter((r) => r.level === 'info' && /MQTT 3\.1\.1/.test(r.msg ?? ''));
    expect(infos.map((r) => r.msg)).toEqual([
      `the MQTT broker at ${aedes.url} does not accept MQTT 5 (CONNACK: Connection refused: Unacceptable protocol version): using MQTT 3.1.1`,
    ]);
    expect(log.records.filter((r) => r.level === 'error' || r.level === 'warn')).toEqual([]);
    await second.publish(topic, 'over 3.1.1', { qos: 1, retain: false });
    await waitFor(() => got.includes('over 3.1.1'), { timeoutMs: 3000, what: 'the message back' });
  });

  it('auto against Mosquitto: MQTT 5, said once', async () => {
    const log = new RecordingLogger();
    const s = session({ url: mosquitto.url, logger: log });
    s.start();
    await waitFor(() => s.connected, { timeoutMs: 5000, what: 'the session to connect' });
    expect(s.protocolVersion).toBe(5);
    expect(attempts(log, 4)).toBe(0);
    expect(log.records.filter((r) => r.level === 'info' && /^speaking MQTT/.test(r.msg ?? '')).map((r) => r.msg)).toEqual([`speaking MQTT 5 with the MQTT broker at ${mosquitto.url}`]);
  });

  it('protocolVersion 5 against Aedes: one clear ERROR for all sessions (what happened, what to set), no fallback', async () => {
    const log = new RecordingLogger();
    const configFailures = new ConfigFailureLog();
    const negotiation = new ProtocolNegotiation(5);
    const a = session({ url: aedes.url, negotiation, configFailures, logger: log });
    const b = session({ url: aedes.url, negotiation, configFailures, logger: log });
    a.start();
    b.start();
    await waitFor(() => attempts(log, 5) >= 2 && log.records.some((r) => r.level === 'error'), { timeoutMs: 5000, what: 'both refused and an ERROR' });
    const errors = log.records.filter((r) => r.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toMatch(/does not accept MQTT 5 \(CONNACK: Connection refused: Unacceptable protocol version\)\. Fix: set broker\.protocolVersion to 'auto'/);
    expect(attempts(log, 4)).toBe(0);
    expect(a.connected || b.connected).toBe(false);
  });

  it('the probe connection of `tether probe`: MQTT 5 on Mosquitto, 3.1.1 on Aedes, and pings either way', async () => {
    for (const [url, expected] of [
      [mosquitto.url, 5],
      [aedes.url, 4],
    ] as const) {
      const probe = await openBrokerProbe(url);
      try {
        expect(probe.protocolVersion).toBe(expected);
        expect(await probe.ping(2000)).toBeGreaterThanOrEqual(0);
      } finally {
        probe.close();
      }
    }
  });

  it('a listener that closes every CONNECT unanswered: auto tries 5, then 3.1.1, then one ERROR saying neither was accepted', async () => {
    // Not a broker: it reads the CONNECT and closes, as RabbitMQ 3.10 does to an MQTT 5 CONNECT.
    const server = net.createServer((socket) => socket.once('data', () => socket.destroy()));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const url = `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const log = new RecordingLogger();
    const s = session({ url, logger: log, backoff: { initialMs: 1000, maxMs: 1000 } });
    s.start();
    await waitFor(() => log.records.some((r) => r.level === "error"), { timeoutMs: 5000, what: "an ERROR", detail: () => JSON.stringify(log.records.map((r) => [r.level, r.msg, r.obj])) });
    expect(attempts(log, 5)).toBe(1);
    expect(attempts(log, 4)).toBe(1);
    const errors = log.records.filter((r) => r.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toMatch(/accepted neither MQTT 5 nor MQTT 3\.1\.1/);
    await s.stop();
  });
});

describe('tether demo --broker against a broker that speaks 3.1.1 only (Aedes in a process)', () => {
  let broker: RunningAedes;
  beforeAll(async () => {
    broker = await startAedesProcess();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('falls back to 3.1.1, says so, and the board is ready on the broker', async () => {
    const httpPort = await freePort();
    const demo = spawn(process.execPath, [CLI, 'demo', '--for', '40s', '--broker', broker.url, '--http-port', String(httpPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    demo.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    demo.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
    const client = await mqtt.connectAsync(broker.url, { clientId: uniqueId('demo-watch'), reconnectPeriod: 0 });
    let ready = false;
    client.on('message', (topic, payload) => {
      if (topic === 'homie/5/demo-uno/$state' && payload.toString() === 'ready') ready = true;
    });
    await client.subscribeAsync('homie/5/demo-uno/$state', { qos: 1 });
    try {
      await waitFor(() => ready, { timeoutMs: 30_000, what: 'demo-uno ready on the 3.1.1 broker', detail: () => output.slice(-1500) });
      expect(output).toMatch(/connected to the broker at mqtt:\/\/127\.0\.0\.1:\d+ with MQTT 3\.1\.1 \(it does not accept MQTT 5\)/);
      expect(output).not.toMatch(/ERROR|"level":50/);
    } finally {
      await client.endAsync(true);
      demo.kill('SIGTERM');
      await within(exited, { timeoutMs: 15_000, what: 'the demo to exit' });
    }
  });
});
