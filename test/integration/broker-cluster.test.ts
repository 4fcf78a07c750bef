import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { refreshTopics } from '../../host/homie/refresh-requests.ts';
import { rabbitmqInstalled, startRabbitCluster, type RabbitCluster } from '../support/rabbitmq-cluster.ts';
import { waitFor } from '../support/wait-for.ts';

// A 3-node RabbitMQ 3.10 cluster (Debian's rabbitmq-server, MQTT plugin, quorum session queues)
// started by the test on this machine, and an in-process gateway with one (simulated) board
// behind a TCP bridge, configured with the three nodes' URLs.

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));
const inCi = process.env.CI === 'true';

function tether(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}
const installed = rabbitmqInstalled();

interface Received {
  topic: string;
  payload: string;
  retain: boolean;
  at: number;
}

/** A plain subscriber on one node (MQTT 3.1.1: RabbitMQ 3.10 speaks nothing else). */
async function subscriber(url: string, topic: string, clientId: string): Promise<{ client: MqttClient; got: Received[]; subscribedAt: number }> {
  const client = await mqtt.connectAsync(url, { clientId, protocolVersion: 4, clean: true, reconnectPeriod: 0, connectTimeout: 10_000 });
  const got: Received[] = [];
  client.on('message', (t, payload, packet) => got.push({ topic: t, payload: payload.toString(), retain: packet.retain, at: performance.now() }));
  await client.subscribeAsync(topic, { qos: 1 });
  return { client, got, subscribedAt: performance.now() };
}

describe('a gateway on a 3-node RabbitMQ 3.10 cluster', () => {
  if (!installed && inCi) {
    it('needs rabbitmq-server (Debian package): it is missing on this CI machine', () => {
      throw new Error('rabbitmq-server is not installed; scripts/test-all.sh installs it');
    });
    return;
  }
  if (!installed) {
    it.skip('SKIPPED: rabbitmq-server (Debian package) is not installed: apt-get install rabbitmq-server', () => {});
    return;
  }

  let cluster: RabbitCluster;
  let board: DeviceOnTcp;
  let gateway: Gateway | null = null;
  const log = new RecordingLogger();
  const clients: MqttClient[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'tether-cluster-'));
  let counter = 0;
  const id = (what: string) => `${what}-${process.pid}-${counter++}`;
  const watch = async (node: number, topic: string) => {
    const s = await subscriber(cluster.urls[node]!, topic, id(`watch-n${node}`));
    clients.push(s.client);
    return s;
  };

  beforeAll(async () => {
    cluster = await startRabbitCluster();
    const memory = await cluster.memoryMb();
    console.log(`RabbitMQ cluster: 3 nodes booted and joined in ${cluster.startMs} ms; resident memory per node ${memory.join(', ')} MB`);
    board = await serveDeviceOverTcp();
  }, 240_000);

  afterAll(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => {});
    await gateway?.stop();
    await board?.close();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('the cluster as it is: a retained message reaches only an exact-topic subscriber on the node that stored it', async () => {
    const topic = `tether-test/${id('retained')}/state`;
    const pub = await mqtt.connectAsync(cluster.urls[0]!, { clientId: id('pub'), protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(pub);
    await pub.publishAsync(topic, 'kept', { qos: 1, retain: true });
    const otherNode = await watch(1, topic);
    const wildcard = await watch(0, 'tether-test/#');
    const sameNode = await watch(0, topic); // subscribed last: once it has the message, the others had their chance
    await waitFor(() => sameNode.got.length > 0, { timeoutMs: 10_000, what: 'the retained message on the node that stored it' });
    expect(sameNode.got[0]).toMatchObject({ topic, payload: 'kept', retain: true });
    expect(otherNode.got).toEqual([]);
    expect(wildcard.got.filter((r) => r.retain)).toEqual([]);
  });

  it('MQTT version: RabbitMQ closes an MQTT 5 CONNECT unanswered, the gateway falls back to 3.1.1 (said once); ready is seen on another node', async () => {
    const other = await watch(1, 'homie/5/+/$state');
    const config = validateConfig({
      gateway: { id: 'gw' },
      broker: { urls: cluster.urls, keepaliveSec: 5, pingRespTimeoutMs: 2000, backoff: { initialMs: 100, maxMs: 1000 } },
      queue: { dir: join(dir, 'queue') },
      devices: [{ id: 'dev-a', port: board.target, keepalive: { intervalMs: 200, misses: 3 } }],
    });
    const started = performance.now();
    gateway = await Gateway.start(config, log, { env: {} });
    const ready = await waitFor(() => other.got.find((r) => r.topic === 'homie/5/dev-a/$state' && r.payload === 'ready'), { timeoutMs: 30_000, what: 'dev-a ready seen on node 1' });
    // The gateway's own session announces itself on its own schedule: settled before the next test.
    await waitFor(() => other.got.find((r) => r.topic === 'homie/5/gw/$state' && r.payload === 'ready'), { timeoutMs: 30_000, what: 'gw ready seen on node 1' });
    console.log(`RabbitMQ cluster: dev-a $state ready seen on another node ${Math.round(ready.at - started)} ms after Gateway.start()`);
    expect(gateway.devices[0]!.mqtt.protocolVersion).toBe(4);
    expect(gateway.mqtt.protocolVersion).toBe(4);
    const said = log.records.filter((r) => r.level === 'info' && /does not accept MQTT 5/.test(r.msg ?? ''));
    expect(said.map((r) => r.msg)).toEqual([
      `the MQTT broker at ${cluster.urls[0]} does not accept MQTT 5 (it closed the connection after our MQTT 5 CONNECT without answering): using MQTT 3.1.1`,
    ]);
    expect(log.records.filter((r) => r.level === 'error')).toEqual([]);
  });

  it('refresh: a late wildcard subscriber gets no retained state, asks, and gets the current state not retained', async () => {
    expect(gateway, 'the gateway of the previous test').not.toBeNull();
    const late = await watch(2, 'homie/5/#');
    const late2 = await watch(2, 'homie/5/#');
    // Nothing retained comes to a wildcard subscriber on RabbitMQ 3.10: it needs a refresh.
    const asker = await mqtt.connectAsync(cluster.urls[2]!, { clientId: id('asker'), protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(asker);
    const asked = performance.now();
    await asker.publishAsync(refreshTopics.device('dev-a'), '', { qos: 1 });
    const state = await waitFor(() => late.got.find((r) => r.topic === 'homie/5/dev-a/$state'), { timeoutMs: 10_000, what: 'dev-a $state after a refresh request' });
    expect(state).toMatchObject({ payload: 'ready', retain: false });
    await waitFor(() => late.got.find((r) => r.topic === 'homie/5/dev-a/$description'), { timeoutMs: 5000, what: 'dev-a $description after the refresh' });
    console.log(`RabbitMQ cluster: refresh answered on another node in ${Math.round(state.at - asked)} ms; resident memory per node ${(await cluster.memoryMb()).join(', ')} MB`);
    expect(late.got.every((r) => !r.retain)).toBe(true);
    expect(late.got.some((r) => r.topic === 'homie/5/gw/$state')).toBe(false); // only the board asked for
    // The broadcast: the gateway's own device too.
    await asker.publishAsync(refreshTopics.broadcast, '', { qos: 1 });
    await waitFor(() => late2.got.find((r) => r.topic === 'homie/5/gw/$state' && r.payload === 'ready'), { timeoutMs: 10_000, what: 'the gateway $state after a broadcast refresh' });
  });

  it('tether status on another node: nothing from retained messages alone, the board ready once it asks the gateways', async () => {
    expect(gateway, 'the gateway of the previous tests').not.toBeNull();
    // Only once the previous test's refresh answers are all out (a request within a second of
    // the last is answered at the end of that second): what comes now could only be retained.
    const quiet = await watch(2, 'homie/5/#');
    const since = performance.now();
    await waitFor(() => performance.now() - Math.max(since, quiet.got.at(-1)?.at ?? 0) > 2000, { timeoutMs: 20_000, what: '2 s without a message on node 2' });
    const retainedOnly = await tether(['status', '--broker', cluster.urls[2]!, '--wait', '1500ms', '--retained-only', '--json']);
    expect(retainedOnly.code, retainedOnly.stderr).toBe(0);
    expect(JSON.parse(retainedOnly.stdout)).toEqual({});
    const asked = await tether(['status', '--broker', cluster.urls[2]!, '--wait', '1500ms', '--json']);
    expect(asked.code, asked.stderr).toBe(0);
    const devices = JSON.parse(asked.stdout) as Record<string, { state?: string }>;
    expect(devices['dev-a']?.state).toBe('ready');
    expect(devices.gw?.state).toBe('ready');
  });

  it('kill -9 of the node the board session is on: it reconnects to another node and the board state is republished', async () => {
    expect(gateway, 'the gateway of the previous tests').not.toBeNull();
    const device = gateway!.devices[0]!;
    const killed = cluster.urls.indexOf(device.mqtt.url);
    expect(killed).toBeGreaterThanOrEqual(0);
    expect(device.mqtt.connected).toBe(true);
    const watchNode = (killed + 2) % 3; // neither the killed node nor the next one the session tries
    const watcher = await watch(watchNode, 'homie/5/dev-a/$state');
    const connectsBefore = device.mqtt.stats.connects;
    const killedAt = performance.now();
    await cluster.killNode(killed);
    const back = await waitFor(() => watcher.got.find((r) => r.at > killedAt && r.payload === 'ready'), {
      timeoutMs: 60_000,
      what: `dev-a ready republished after the kill of node ${killed}`,
      detail: () => `session on ${device.mqtt.url}, connected ${device.mqtt.connected}`,
    });
    const reconnectedAt = performance.now();
    console.log(
      `RabbitMQ cluster: kill -9 of node ${killed}: board session on ${device.mqtt.url} again, ready seen on node ${watchNode} ${Math.round(back.at - killedAt)} ms after the kill`,
    );
    const mark = log.records.length;
    const sessionLog = () =>
      JSON.stringify(log.records.slice(mark).filter((r) => r.level !== 'debug' && (r.obj as { device?: string }).device === 'dev-a').map((r) => [r.level, r.msg, r.obj]));
    await waitFor(() => device.mqtt.connected && device.mqtt.url !== cluster.urls[killed], { timeoutMs: 30_000, what: 'the board session connected to another node', detail: sessionLog });
    if (log.records.length > mark) console.log(`RabbitMQ cluster: board session log after the republish: ${sessionLog()}`);
    expect(device.mqtt.stats.connects).toBeGreaterThan(connectsBefore);
    expect(reconnectedAt).toBeGreaterThan(killedAt);
    // The gateway's own session moved too.
    await waitFor(() => gateway!.mqtt.connected && gateway!.mqtt.url !== cluster.urls[killed], { timeoutMs: 30_000, what: 'the gateway session on another node' });
  });
});
