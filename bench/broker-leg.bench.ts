// Benchmarks 3, 4 and 6 on the broker leg, with the daemon's real parts (BrokerSession,
// DurableOutbox, OutboxPump) against a real Mosquitto:
//  3. half-open detection through a blackholing proxy vs our bound and mqtt.js's 1.5 x keepalive;
//  4. publish throughput and end-to-end latency of the leg vs raw mqtt.js, same payloads;
//  6. a 10 s broker outage under steady telemetry: messages lost, and time to drain the queue.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { BrokerSession } from '../host/mqtt/broker-session.ts';
import { DurableOutbox } from '../host/mqtt/durable-outbox.ts';
import { OutboxPump } from '../host/mqtt/outbox-pump.ts';
import { startMosquitto, type RunningMosquitto } from '../test/support/mosquitto.ts';
import { startTcpProxy } from '../test/support/tcp-proxy.ts';
import { percentile, printTable, sleep, type Row } from './support.ts';

const TOPIC = 'bench/telemetry';

async function subscriber(url: string, clientId: string) {
  const client = await mqtt.connectAsync(url, { clientId, clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 100 });
  const received = new Map<number, number>(); // seq -> receive time
  client.on('message', (_t, payload) => {
    const seq = payload.readUInt32BE(0);
    if (!received.has(seq)) received.set(seq, performance.now());
  });
  await client.subscribeAsync(TOPIC, { qos: 1 });
  return { client, received };
}

function payload(seq: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(seq, 0);
  return b;
}

async function halfOpen(broker: RunningMosquitto): Promise<Row[]> {
  const K = 4;
  const T = 1000;
  const trials = 3;
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let i = 0; i < trials; i++) {
    const proxy = await startTcpProxy(broker.port);
    const session = new BrokerSession({ url: `mqtt://127.0.0.1:${proxy.port}`, clientId: `bench-ho-${i}`, keepaliveSec: K, pingRespTimeoutMs: T });
    const raw = mqtt.connect(`mqtt://127.0.0.1:${proxy.port}`, { clientId: `bench-raw-${i}`, keepalive: K, reconnectPeriod: 0 });
    session.start();
    await new Promise((r) => session.once('up', r));
    await new Promise((r) => (raw.connected ? r(null) : raw.once('connect', r)));
    await sleep(Math.random() * 1000);
    const at = performance.now();
    proxy.blackhole(true);
    const [a, b] = await Promise.all([
      new Promise<number>((r) => session.once('half-open', () => r(performance.now() - at))),
      new Promise<number>((r) => raw.once('close', () => r(performance.now() - at))),
    ]);
    ours.push(a);
    theirs.push(b);
    await session.stop();
    raw.end(true);
    await proxy.close();
  }
  const max = (xs: number[]) => Math.max(...xs);
  return [
    {
      benchmark: `half-open broker link detected (max of ${trials}, keepalive ${K} s)`,
      measured: `tether ${max(ours).toFixed(0)} ms`,
      limit: `bound ${K * 1000 + T} ms; mqtt.js ${max(theirs).toFixed(0)} ms (1.5 x K = ${K * 1500})`,
      ratio: `${(max(ours) / max(theirs)).toFixed(2)}x of mqtt.js`,
    },
  ];
}

async function throughput(broker: RunningMosquitto): Promise<Row[]> {
  const N = Number(process.env.TETHER_BENCH_MESSAGES ?? 5000);
  // Raw mqtt.js, QoS 1, 64 in flight.
  const rawSub = await subscriber(broker.url, 'bench-sub-raw');
  const raw = await mqtt.connectAsync(broker.url, { clientId: 'bench-raw-pub' });
  const sentAtRaw = new Map<number, number>();
  let t0 = performance.now();
  for (let seq = 0; seq < N; ) {
    const batch: Promise<unknown>[] = [];
    for (let k = 0; k < 64 && seq < N; k++, seq++) {
      sentAtRaw.set(seq, performance.now());
      batch.push(raw.publishAsync(TOPIC, payload(seq), { qos: 1 }));
    }
    await Promise.all(batch);
  }
  while (rawSub.received.size < N) await sleep(10);
  const rawRate = N / ((performance.now() - t0) / 1000);
  const rawLat = [...rawSub.received].map(([s, at]) => at - sentAtRaw.get(s)!).sort((a, b) => a - b);
  await raw.endAsync();
  await rawSub.client.endAsync();

  // The tether leg: durable outbox (journal on disk) + pump + BrokerSession.
  const sub = await subscriber(broker.url, 'bench-sub-leg');
  const outbox = await DurableOutbox.open(join(mkdtempSync(join(tmpdir(), 'tether-bench-ob-')), 'outbox'), { maxEntries: 1_000_000, maxBytes: 512 * 1024 * 1024 });
  const session = new BrokerSession({ url: broker.url, clientId: 'bench-leg-pub', keepaliveSec: 30 });
  const pump = new OutboxPump(outbox, session, { inflight: 64 });
  session.start();
  await new Promise((r) => session.once('up', r));
  pump.start();
  const sentAt = new Map<number, number>();
  t0 = performance.now();
  for (let seq = 0; seq < N; seq++) {
    sentAt.set(seq, performance.now());
    outbox.enqueue({ topic: TOPIC, payload: payload(seq), qos: 1, retain: false, kind: 'telemetry' });
    if (seq % 256 === 255) await new Promise((r) => setImmediate(r)); // a producer that yields, as the daemon's serial input does
  }
  while (sub.received.size < N) await sleep(10);
  const legRate = N / ((performance.now() - t0) / 1000);
  const legLat = [...sub.received].map(([s, at]) => at - sentAt.get(s)!).sort((a, b) => a - b);
  await pump.stop();
  await session.stop();
  await outbox.close();
  await sub.client.endAsync();
  return [
    {
      benchmark: `burst of ${N} x 32 B QoS 1 through the durable leg (msg/s; p99 enqueue->delivered)`,
      measured: `${legRate.toFixed(0)} msg/s, p99 ${percentile(legLat, 99).toFixed(1)} ms`,
      limit: `raw mqtt.js: ${rawRate.toFixed(0)} msg/s, p99 ${percentile(rawLat, 99).toFixed(1)} ms`,
      ratio: `${(legRate / rawRate).toFixed(2)}x throughput`,
    },
  ];
}

async function outage(broker: RunningMosquitto): Promise<Row[]> {
  const RATE = 50; // messages per second
  const sub = await subscriber(broker.url, 'bench-sub-outage');
  const outbox = await DurableOutbox.open(join(mkdtempSync(join(tmpdir(), 'tether-bench-out-')), 'outbox'));
  const session = new BrokerSession({ url: broker.url, clientId: 'bench-outage-pub', keepaliveSec: 5, pingRespTimeoutMs: 1000, backoff: { initialMs: 100, maxMs: 1000 } });
  const pump = new OutboxPump(outbox, session, { inflight: 64 });
  session.start();
  await new Promise((r) => session.once('up', r));
  pump.start();
  let seq = 0;
  const producer = setInterval(() => outbox.enqueue({ topic: TOPIC, payload: payload(seq++), qos: 1, retain: false, kind: 'telemetry' }), 1000 / RATE);
  await sleep(3000);
  await broker.kill9();
  await sleep(10_000);
  await broker.restart();
  const back = performance.now();
  await sleep(3000);
  clearInterval(producer);
  const total = seq;
  const deadline = performance.now() + 60_000;
  while (sub.received.size < total && performance.now() < deadline) await sleep(20);
  const lastAt = Math.max(...sub.received.values());
  const lost = total - sub.received.size;
  await pump.stop();
  await session.stop();
  await outbox.close();
  await sub.client.endAsync();
  return [
    {
      benchmark: `10 s broker outage (kill -9) at ${RATE} msg/s: lost of ${total}; broker back -> queue drained`,
      measured: `${lost} lost; drained ${((lastAt - back) / 1000).toFixed(1)} s after restart`,
      limit: '0 lost',
      ratio: lost === 0 ? 'ok' : 'LOSS',
    },
  ];
}

export async function brokerLeg(): Promise<Row[]> {
  const rows: Row[] = [];
  // Throughput without broker persistence (a persistent Mosquitto saving after every change
  // measures the disk, not the client).
  const fast = await startMosquitto();
  try {
    rows.push(...(await halfOpen(fast)), ...(await throughput(fast)));
  } finally {
    await fast.stop();
  }
  const durable = await startMosquitto({ persistenceDir: mkdtempSync(join(tmpdir(), 'tether-bench-mosq-')) });
  try {
    rows.push(...(await outage(durable)));
  } finally {
    await durable.stop();
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) printTable('Broker leg', await brokerLeg());
