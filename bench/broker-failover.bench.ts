// Benchmark: a gateway with N boards moving to another broker node. One `tether daemon` with N
// simulated boards (protocol level, behind TCP bridges), `broker.urls: [A, B]`, every session on
// Mosquitto A; then kill -9 of A: how long until every board's `$state ready` is republished on
// B (seen by a subscriber on B). Two separate Mosquittos stand for two cluster nodes that do not
// share retained messages (as RabbitMQ 3.x nodes do not): B has nothing until the sessions
// republish. A RabbitMQ cluster with N quorum session queues is too heavy for the shared 2-core
// machine; the 1-board case on RabbitMQ is measured in test/integration/broker-cluster.test.ts.
// Baseline: the same daemon's first start (the same connects and publishes, plus opening the bridges).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { stringify } from 'yaml';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../emulator/simulator/tcp-device-server.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { printTable, sleep, type Row } from './support.ts';

const CLI = fileURLToPath(new URL('../bin/tether.js', import.meta.url));
const SIZES = (process.env.TETHER_BENCH_FAILOVER ?? '1000').split(',').map(Number);

/** Board ids whose `$state` was `ready` at or after `since` (ms, performance.now()), as seen by `client`. */
function readyWatcher(client: MqttClient): { readySince(since: number): number; lastAt: () => number } {
  const at = new Map<string, number>();
  let last = 0;
  client.on('message', (topic, payload) => {
    if (payload.toString() !== 'ready') return;
    const now = performance.now();
    at.set(topic.split('/')[2]!, now);
    last = now;
  });
  return { readySince: (since) => [...at.values()].filter((t) => t >= since).length, lastAt: () => last };
}

async function measure(n: number): Promise<{ startS: number; failoverS: number }> {
  const a = await startMosquitto();
  const b = await startMosquitto();
  const sims: DeviceOnTcp[] = [];
  const dir = mkdtempSync(join(tmpdir(), `tether-failover-${n}-`));
  try {
    for (let i = 0; i < n; i++) sims.push(await serveDeviceOverTcp({ bootId: i + 1 }));
    const config = {
      gateway: { id: 'failover-gw' },
      broker: { urls: [a.url, b.url], keepaliveSec: 30 },
      queue: { dir: join(dir, 'queue') },
      log: { level: 'warn' },
      homeassistant: { enabled: false },
      devices: sims.map((s, i) => ({ id: `sim-${i}`, port: s.target, keepalive: { intervalMs: 1000, misses: 3 } })),
    };
    writeFileSync(join(dir, 'tether.yaml'), stringify(config));
    const onA = await mqtt.connectAsync(a.url, { protocolVersion: 5 });
    const onB = await mqtt.connectAsync(b.url, { protocolVersion: 5 });
    const seenA = readyWatcher(onA);
    const seenB = readyWatcher(onB);
    await onA.subscribeAsync('homie/5/+/$state', { qos: 1 });
    await onB.subscribeAsync('homie/5/+/$state', { qos: 1 });
    const started = performance.now();
    const daemon = spawn(process.execPath, [CLI, 'daemon', '--config', join(dir, 'tether.yaml')], { stdio: ['ignore', 'ignore', 'inherit'] });
    const total = n + 1; // the boards and the gateway
    while (seenA.readySince(0) < total && performance.now() - started < 300_000) await sleep(100);
    if (seenA.readySince(0) < total) throw new Error(`only ${seenA.readySince(0)} of ${total} ready on A`);
    const startS = (seenA.lastAt() - started) / 1000;
    await sleep(3000); // settle after the start-up burst
    const killedAt = performance.now();
    await a.kill9();
    while (seenB.readySince(killedAt) < total && performance.now() - killedAt < 300_000) await sleep(100);
    if (seenB.readySince(killedAt) < total) throw new Error(`only ${seenB.readySince(killedAt)} of ${total} ready on B after the kill`);
    const failoverS = (seenB.lastAt() - killedAt) / 1000;
    await new Promise<void>((resolve) => {
      daemon.once('exit', () => resolve());
      daemon.kill('SIGTERM');
    });
    await onA.endAsync(true);
    await onB.endAsync(true);
    return { startS, failoverS };
  } finally {
    for (const s of sims) await s.close();
    await a.stop();
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function brokerFailover(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const n of SIZES) {
    process.stderr.write(`  ${n} boards moving to another broker node...\n`);
    const r = await measure(n);
    rows.push({
      benchmark: `${n} boards + gateway: kill -9 of broker node A, every $state ready republished on node B (broker.urls)`,
      measured: `${r.failoverS.toFixed(2)} s`,
      // The first start is shown for scale only: it is not the same work (process start, ownership
      // delays, every session new), so no ratio is made against it.
      limit: `no baseline (first start of the same daemon, for scale: ${r.startS.toFixed(2)} s)`,
      ratio: '-',
    });
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) printTable('Broker failover', await brokerFailover());
