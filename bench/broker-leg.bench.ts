// Benchmarks 3, 4 and 6 on the broker leg, with the daemon's real parts (BrokerSession,
// DurableOutbox, OutboxPump) against a real Mosquitto:
//  3. half-open detection through a blackholing proxy vs our bound and mqtt.js's 1.5 x keepalive;
//  4. publish throughput and end-to-end latency of the durable leg vs raw mqtt.js keeping the same
//     window of QoS 1 publishes in flight, same payloads, same producer (`--throughput` runs only this);
//  6. a 10 s broker outage under steady telemetry: messages lost, and time to drain the queue.
import { mkdtempSync, rmSync } from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { BrokerSession } from '../host/mqtt/broker-session.ts';
import { DurableOutbox } from '../host/mqtt/durable-outbox.ts';
import { nodeFs, type OutboxFs } from '../host/mqtt/outbox-journal.ts';
import { OutboxPump } from '../host/mqtt/outbox-pump.ts';
import { startMosquitto, type RunningMosquitto } from '../test/support/mosquitto.ts';
import { startTcpProxy } from '../test/support/tcp-proxy.ts';
import { waitFor } from '../test/support/wait-for.ts';
import { onceWithin, percentile, printTable, sleep, withDeadline, type Row } from './support.ts';

const TOPIC = 'bench/telemetry';

/**
 * A QoS 1 subscriber to TOPIC. `persistent` (the outage bench) keeps its session across a broker
 * restart; the throughput runs use a clean session, or every earlier run's subscriber would stay
 * subscribed offline and make the broker queue each later run's messages for it.
 */
async function subscriber(url: string, clientId: string, persistent = false) {
  const client = await withDeadline(
    mqtt.connectAsync(url, { clientId, clean: !persistent, protocolVersion: 5, properties: { sessionExpiryInterval: persistent ? 3600 : 0 }, reconnectPeriod: 100 }),
    10_000,
    `subscriber ${clientId} to connect`,
  );
  const received = new Map<number, number>(); // seq -> receive time
  client.on('message', (_t, payload) => {
    const seq = payload.readUInt32BE(0);
    if (!received.has(seq)) received.set(seq, performance.now());
  });
  await withDeadline(client.subscribeAsync(TOPIC, { qos: 1 }), 10_000, `subscriber ${clientId} to subscribe`);
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
    await onceWithin(session, 'up', 10_000, 'the BrokerSession to connect (half-open bench)');
    if (!raw.connected) await onceWithin(raw, 'connect', 10_000, 'raw mqtt.js to connect (half-open bench)');
    await sleep(Math.random() * 1000);
    const at = performance.now();
    proxy.blackhole(true);
    // Both are bounded (K + T, 1.5 K); the deadline only keeps a broken build from hanging.
    const [a, b] = await withDeadline(
      Promise.all([
        new Promise<number>((r) => session.once('half-open', () => r(performance.now() - at))),
        new Promise<number>((r) => raw.once('close', () => r(performance.now() - at))),
      ]),
      4 * K * 1000 + T,
      'the half-open verdicts of tether and mqtt.js',
    );
    ours.push(a);
    theirs.push(b);
    await withDeadline(session.stop(), 10_000, 'the BrokerSession to stop');
    raw.end(true);
    await withDeadline(proxy.close(), 10_000, 'the proxy to close');
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

type LegVariant = 'raw' | 'leg-fsync-always' | 'leg-fsync-never';
interface LegRun {
  rate: number;
  p50: number;
  p99: number;
  /** Process CPU (user + system, all threads: the journal's writes and fsyncs too) per message, µs. */
  cpuUs: number;
  /** Event-loop delay p99 and max during the run, ms (verbose output only). */
  loopP99: number;
  loopMax: number;
  /** fdatasync calls by the outbox (verbose output only; 0 for raw). */
  syncs?: number;
}

const WINDOW = 64;
const DELIVERY_DEADLINE_MS = 180_000;

/**
 * The producer both variants share: N messages of 32 B, yielding every 256 as the daemon's serial
 * input does; `sentAt[seq]` is when the message was handed over (to the outbox, or to the raw
 * client's in-memory queue).
 */
async function produce(n: number, sentAt: Float64Array, hand: (seq: number) => void): Promise<void> {
  for (let seq = 0; seq < n; seq++) {
    sentAt[seq] = performance.now();
    hand(seq);
    if (seq % 256 === 255) await new Promise((r) => setImmediate(r));
  }
}

async function delivered(
  sub: Awaited<ReturnType<typeof subscriber>>,
  n: number,
  sentAt: Float64Array,
  t0: number,
  cpu0: NodeJS.CpuUsage,
  loop: IntervalHistogram,
  what: string,
): Promise<LegRun> {
  await waitFor(() => sub.received.size >= n, {
    what: `${what}: all ${n} messages at the subscriber`,
    timeoutMs: DELIVERY_DEADLINE_MS,
    intervalMs: 5,
    detail: () => `${sub.received.size} received`,
  });
  let last = 0;
  const lat: number[] = [];
  for (const [seq, at] of sub.received) {
    last = Math.max(last, at);
    lat.push(at - sentAt[seq]!);
  }
  const cpu = process.cpuUsage(cpu0);
  loop.disable();
  lat.sort((a, b) => a - b);
  return {
    rate: n / ((last - t0) / 1000),
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    cpuUs: (cpu.user + cpu.system) / n,
    loopP99: loop.percentile(99) / 1e6,
    loopMax: loop.max / 1e6,
  };
}

/**
 * The fair baseline: raw mqtt.js (same protocol version and session kind as BrokerSession) fed
 * by the same producer through an in-memory FIFO, keeping WINDOW QoS 1 publishes in flight at
 * all times (the next one leaves as soon as a PUBACK frees a slot), like the pump does.
 */
async function rawRun(broker: RunningMosquitto, n: number, tag: string): Promise<LegRun> {
  const sub = await subscriber(broker.url, `bench-sub-raw-${tag}`);
  const raw = await withDeadline(
    mqtt.connectAsync(broker.url, { clientId: `bench-raw-pub-${tag}`, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } }),
    10_000,
    'the raw mqtt.js publisher to connect',
  );
  const sentAt = new Float64Array(n);
  const payloads: Buffer[] = [];
  let next = 0;
  let inflight = 0;
  const onAck = (err?: Error) => {
    if (err) throw err;
    inflight--;
    pump();
  };
  const pump = () => {
    while (inflight < WINDOW && next < payloads.length) {
      inflight++;
      raw.publish(TOPIC, payloads[next++]!, { qos: 1 }, onAck);
    }
  };
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await produce(n, sentAt, (seq) => {
    payloads.push(payload(seq));
    pump();
  });
  const result = await delivered(sub, n, sentAt, t0, cpu0, loop, 'raw mqtt.js');
  await withDeadline(raw.endAsync(), 10_000, 'the raw publisher to disconnect');
  await withDeadline(sub.client.endAsync(), 10_000, 'the subscriber to disconnect');
  return result;
}

/** The tether leg: DurableOutbox (journal on disk) + OutboxPump (WINDOW in flight) + BrokerSession. */
async function legRun(broker: RunningMosquitto, n: number, fsync: 'always' | 'never', tag: string): Promise<LegRun> {
  const sub = await subscriber(broker.url, `bench-sub-leg-${tag}`);
  const dir = mkdtempSync(join(tmpdir(), 'tether-bench-ob-'));
  let syncs = 0;
  const io: OutboxFs = { ...nodeFs, sync: (fd) => (syncs++, nodeFs.sync(fd)) };
  const outbox = await DurableOutbox.open(join(dir, 'outbox'), { maxEntries: 1_000_000, maxBytes: 512 * 1024 * 1024, fsync, fs: io });
  const session = new BrokerSession({ url: broker.url, clientId: `bench-leg-pub-${tag}`, keepaliveSec: 30 });
  const pump = new OutboxPump(outbox, session, { inflight: WINDOW });
  session.start();
  await onceWithin(session, 'up', 10_000, 'the BrokerSession to connect');
  pump.start();
  const sentAt = new Float64Array(n);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await produce(n, sentAt, (seq) => {
    outbox.enqueue({ topic: TOPIC, payload: payload(seq), qos: 1, retain: false, kind: 'telemetry' });
  });
  const syncs0 = syncs;
  const result = { ...(await delivered(sub, n, sentAt, t0, cpu0, loop, `durable leg (fsync ${fsync})`)), syncs: syncs - syncs0 };
  await withDeadline(pump.stop(), 10_000, 'the pump to stop');
  await withDeadline(session.stop(), 10_000, 'the BrokerSession to stop');
  await withDeadline(outbox.close(), 10_000, 'the outbox to close');
  await withDeadline(sub.client.endAsync(), 10_000, 'the subscriber to disconnect');
  rmSync(dir, { recursive: true, force: true });
  return result;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Benchmark 4: the durable leg against the fair raw mqtt.js baseline, at two burst sizes, with
 * the default fsync ('always') and with fsync off; medians of RUNS runs, the variants
 * interleaved (and their order rotated each run) so a slow moment of the machine hits all alike.
 */
export async function durableLegThroughput(broker: RunningMosquitto): Promise<Row[]> {
  const sizes = (process.env.TETHER_BENCH_MESSAGES ?? '5000,20000').split(',').map(Number);
  const runs = Number(process.env.TETHER_BENCH_RUNS ?? 3);
  // TETHER_BENCH_VARIANTS=leg-fsync-never (comma-separated) runs only those, e.g. to profile one.
  const variants = (process.env.TETHER_BENCH_VARIANTS ?? 'raw,leg-fsync-always,leg-fsync-never').split(',') as LegVariant[];
  const results = new Map<string, LegRun[]>();
  // Warm-up, discarded: the first run of each variant otherwise pays for the JIT.
  for (const variant of variants) {
    if (variant === 'raw') await rawRun(broker, 2000, `warm-${variant}`);
    else await legRun(broker, 2000, variant === 'leg-fsync-always' ? 'always' : 'never', `warm-${variant}`);
  }
  for (let run = 0; run < runs; run++) {
    for (const n of sizes) {
      for (let k = 0; k < variants.length; k++) {
        const variant = variants[(k + run) % variants.length]!;
        const tag = `${n}-${run}-${variant}`;
        const r =
          variant === 'raw' ? await rawRun(broker, n, tag) : await legRun(broker, n, variant === 'leg-fsync-always' ? 'always' : 'never', tag);
        const key = `${n}/${variant}`;
        results.set(key, [...(results.get(key) ?? []), r]);
        if (process.env.TETHER_BENCH_VERBOSE) process.stderr.write(`${tag}: ${r.rate.toFixed(0)} msg/s p50 ${r.p50.toFixed(1)} p99 ${r.p99.toFixed(1)} ms, ${r.cpuUs.toFixed(1)} µs CPU/msg, loop delay p99 ${r.loopP99.toFixed(1)} max ${r.loopMax.toFixed(1)} ms${r.syncs === undefined ? '' : `, ${r.syncs} fdatasyncs`}\n`);
      }
    }
  }
  const med = (key: string) => {
    const rs = results.get(key)!;
    return { rate: median(rs.map((r) => r.rate)), p99: median(rs.map((r) => r.p99)), cpuUs: median(rs.map((r) => r.cpuUs)) };
  };
  const rows: Row[] = [];
  for (const n of sizes) {
    if (!results.has(`${n}/raw`)) continue;
    const raw = med(`${n}/raw`);
    for (const [variant, label, goal] of [
      ['leg-fsync-always', 'default fsync (always)', 0.9],
      ['leg-fsync-never', 'fsync off', 1.0],
    ] as const) {
      if (!results.has(`${n}/${variant}`)) continue;
      const leg = med(`${n}/${variant}`);
      const ratio = leg.rate / raw.rate;
      const latRatio = leg.p99 / raw.p99;
      rows.push({
        benchmark: `durable leg, ${label}: ${n} x 32 B QoS 1, ${WINDOW} in flight (median of ${runs}; msg/s, p99 publish->delivered, process CPU per message incl. the in-process subscriber)`,
        measured: `${leg.rate.toFixed(0)} msg/s, p99 ${leg.p99.toFixed(1)} ms, ${leg.cpuUs.toFixed(1)} µs CPU/msg`,
        limit: `raw mqtt.js ${WINDOW} in flight: ${raw.rate.toFixed(0)} msg/s, p99 ${raw.p99.toFixed(1)} ms, ${raw.cpuUs.toFixed(1)} µs CPU/msg`,
        ratio: `${ratio.toFixed(2)}x throughput (goal >= ${goal.toFixed(1)}x: ${(ratio / goal).toFixed(2)} of goal); p99 ${latRatio.toFixed(2)}x (goal <= 2x: ${(latRatio / 2).toFixed(2)} of it)`,
      });
    }
  }
  return rows;
}

async function outage(broker: RunningMosquitto): Promise<Row[]> {
  const RATE = 50; // messages per second
  const sub = await subscriber(broker.url, 'bench-sub-outage', true);
  const outbox = await DurableOutbox.open(join(mkdtempSync(join(tmpdir(), 'tether-bench-out-')), 'outbox'));
  const session = new BrokerSession({ url: broker.url, clientId: 'bench-outage-pub', keepaliveSec: 5, pingRespTimeoutMs: 1000, backoff: { initialMs: 100, maxMs: 1000 } });
  const pump = new OutboxPump(outbox, session, { inflight: 64 });
  session.start();
  await onceWithin(session, 'up', 10_000, 'the BrokerSession to connect (outage bench)');
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
  // A deadline that is part of the figure: what has not arrived by then is reported as lost.
  const lastAt = Math.max(...sub.received.values());
  const lost = total - sub.received.size;
  await withDeadline(pump.stop(), 10_000, 'the pump to stop');
  await withDeadline(session.stop(), 10_000, 'the BrokerSession to stop');
  await withDeadline(outbox.close(), 10_000, 'the outbox to close');
  await withDeadline(sub.client.endAsync(), 10_000, 'the subscriber to disconnect');
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
  const fast = await startMosquitto({ keepAllQueued: true });
  try {
    rows.push(...(await halfOpen(fast)), ...(await durableLegThroughput(fast)));
  } finally {
    await fast.stop();
  }
  const durable = await startMosquitto({ keepAllQueued: true, persistenceDir: mkdtempSync(join(tmpdir(), 'tether-bench-mosq-')) });
  try {
    rows.push(...(await outage(durable)));
  } finally {
    await durable.stop();
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes('--throughput')) {
    // Only the durable leg against the fair baseline (for profiling and before/after figures).
    const broker = await startMosquitto({ keepAllQueued: true });
    try {
      printTable('Durable leg vs raw mqtt.js', await durableLegThroughput(broker));
    } finally {
      await broker.stop();
    }
  } else printTable('Broker leg', await brokerLeg());
  process.exit(0);
}
