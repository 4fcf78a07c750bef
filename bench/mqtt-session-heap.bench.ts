// The broker side of a board, alone: N boards' BrokerSession (one mqtt.js client each, on a
// real Mosquitto) + DurableOutbox + OutboxPump, made in this process the way the gateway makes
// them (shared timer heap, shared journal fd pool, the path's keepalive schedule). Each board
// publishes its start-up messages; once every one is acknowledged and the journals are idle, the
// live heap (after a full GC) and the allocations of a steady-state minute are measured per board.
//
//   npm run build; TETHER_BENCH_MQTT_HEAP=2000 npx tsx bench/mqtt-session-heap.bench.ts
//   TETHER_BENCH_MQTT_HEAP_SNAPSHOT=/tmp/x.heapsnapshot  also writes a heap snapshot (grouped
//   by constructor with /work/tools/snap.mjs-like tools) at the measuring point.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString, writeHeapSnapshot } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { KeepaliveTraffic } from '../host/mqtt/keepalive-traffic.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { sleep, type Row } from './support.ts';

// The build the daemon runs (npm run build), not the sources through tsx: tsx gives every
// function a `name` property of its own, which puts each closure's properties in a dictionary
// (about 250 bytes a closure) that the daemon does not have.
// TETHER_BENCH_MQTT_HEAP_DIST: another build's dist/ (a before/after pair).
const DIST = process.env.TETHER_BENCH_MQTT_HEAP_DIST ?? fileURLToPath(new URL('../dist', import.meta.url));
const dist = (path: string) => import(join(DIST, 'host', path));
const { BrokerSession } = (await dist('mqtt/broker-session.js')) as typeof import('../host/mqtt/broker-session.ts');
const { DurableOutbox } = (await dist('mqtt/durable-outbox.js')) as typeof import('../host/mqtt/durable-outbox.ts');
const { JournalFdPool } = (await dist('mqtt/journal-fd-pool.js')) as typeof import('../host/mqtt/journal-fd-pool.ts');
const { OutboxPump } = (await dist('mqtt/outbox-pump.js')) as typeof import('../host/mqtt/outbox-pump.ts');
const { ProtocolNegotiation } = (await dist('mqtt/protocol-negotiation.js')) as typeof import('../host/mqtt/protocol-negotiation.ts');
const { ConfigFailureLog } = (await dist('mqtt/broker-errors.js')) as typeof import('../host/mqtt/broker-errors.ts');
const { systemClock } = (await dist('time/clock.js')) as typeof import('../host/time/clock.ts');
const { SharedTimers } = (await dist('time/shared-timers.js')) as typeof import('../host/time/shared-timers.ts');
type BrokerSession = import('../host/mqtt/broker-session.ts').BrokerSession;
type DurableOutbox = import('../host/mqtt/durable-outbox.ts').DurableOutbox;
type OutboxPump = import('../host/mqtt/outbox-pump.ts').OutboxPump;

const N = Number(process.env.TETHER_BENCH_MQTT_HEAP ?? 1000);
const SNAPSHOT = process.env.TETHER_BENCH_MQTT_HEAP_SNAPSHOT;

/** The path's PINGREQ schedule (the gateway's PathKeepalive, without its probe connection); set() moves it. */
const listeners = new Set<(ms: number) => void>();
let intervalMs = 30_000;
const traffic: KeepaliveTraffic & { set(ms: number): void } = {
  get intervalMs() {
    return intervalMs;
  },
  onIntervalChange: (listener) => {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
  survived: () => {},
  cut: () => {},
  set(ms) {
    intervalMs = ms;
    for (const l of listeners) l(ms);
  },
};
const PUBLISH_ROUNDS = 5;
const PING_WINDOW_MS = 10_000;

/** A full collection (twice: what the first frees may hold more), without node --expose-gc. */
function gc(): void {
  setFlagsFromString('--expose-gc');
  const collect = runInNewContext('gc') as () => void;
  collect();
  collect();
}

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`bench: timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function cpuOver(ms: number): Promise<NodeJS.CpuUsage> {
  const start = process.cpuUsage();
  await sleep(ms);
  return process.cpuUsage(start);
}

function pingsOf(boards: Array<{ session: BrokerSession }>): number {
  let sum = 0;
  for (const b of boards) sum += b.session.stats.keepaliveBytes;
  return sum / 4; // 2 bytes each way per PINGREQ/PINGRESP over TCP
}

export async function mqttSessionHeap(n = N): Promise<Row[]> {
  const broker = await startMosquitto({ extraConfig: ['max_connections -1'], keepAllQueued: true });
  const dir = mkdtempSync(join(tmpdir(), 'tether-mqtt-heap-'));
  const timers = new SharedTimers(systemClock);
  const pool = new JournalFdPool(64);
  const negotiation = new ProtocolNegotiation('auto');
  const configFailures = new ConfigFailureLog();
  const boards: Array<{ session: BrokerSession; outbox: DurableOutbox; pump: OutboxPump }> = [];
  const all: typeof boards = [];
  /** Makes `count` boards, connects them and lets each publish its start-up messages until acknowledged. */
  const startBoards = async (count: number, name: string) => {
    const made: typeof boards = [];
    for (let i = 0; i < count; i++) {
      const id = `${name}-${i}`;
      const outbox = await DurableOutbox.open(join(dir, `${id}.outbox`), { clock: timers, fdPool: pool });
      const session = new BrokerSession({
        url: broker.url,
        clientId: `tether-${id}`,
        will: { topic: `homie/5/${id}/$state`, payload: 'lost', qos: 1, retain: true },
        negotiation,
        configFailures,
        keepaliveTraffic: traffic,
        clock: timers,
      });
      made.push({ session, outbox, pump: new OutboxPump(outbox, session) });
    }
    all.push(...made);
    for (const b of made) {
      b.session.start();
      b.pump.start();
    }
    await until(() => made.every((b) => b.session.connected), 120_000, `${count} sessions to connect`);
    // A board's start-up: $state, $description, the keepalive facts, $state ready.
    for (const [i, b] of made.entries()) {
      const put = (topic: string, payload: string, kind: 'state' | 'telemetry') => b.outbox.enqueue({ topic: `homie/5/${name}-${i}/${topic}`, payload: Buffer.from(payload), qos: 1, retain: true, kind });
      put('$state', 'init', 'state');
      put('$description', JSON.stringify({ homie: '5.0', version: 1, name: `${name}-${i}`, nodes: { tether: { properties: { rtt: {}, 'last-seen': {} } } } }), 'state');
      for (const p of ['rtt', 'last-seen']) put(`tether/${p}`, '12.3', 'telemetry');
      for (const p of ['boot-id', 'reboots', 'asleep-time']) put(`tether/${p}`, '0', 'state');
      put('$state', 'ready', 'state');
    }
    await until(() => made.every((b) => b.outbox.size === 0), 120_000, 'every start-up message acknowledged');
    await until(() => pool.held === 0, 30_000, 'every journal idle (its fd closed)');
    return made;
  };
  try {
    // A first few boards, not counted: the code they run is compiled, the shared parts made.
    await startBoards(100, 'warm');
    gc();
    const before = process.memoryUsage();
    boards.push(...(await startBoards(n, 'heap')));
    gc();
    const after = process.memoryUsage();
    const liveKiB = (after.heapUsed - before.heapUsed) / 1024 / n;
    const externalKiB = (after.external - before.external) / 1024 / n;
    if (SNAPSHOT) process.stderr.write(`  heap snapshot: ${writeHeapSnapshot(SNAPSHOT)}\n`);
    // Steady state: RTT messages, one per board at a time, as keepalive-facts publishes them.
    const cpu0 = process.cpuUsage();
    for (let round = 0; round < PUBLISH_ROUNDS; round++) {
      for (const [i, b] of boards.entries()) b.outbox.enqueue({ topic: `homie/5/heap-${i}/tether/rtt`, payload: Buffer.from(`13.${round}`), qos: 1, retain: true, kind: 'telemetry' });
      await until(() => boards.every((b) => b.outbox.size === 0), 120_000, 'every RTT message acknowledged');
    }
    await until(() => pool.held === 0, 30_000, 'every journal idle (its fd closed)');
    const publish = process.cpuUsage(cpu0);
    const perPublish = (us: number) => us / n / PUBLISH_ROUNDS;
    // Keepalive: every session sends a PINGREQ a second (against the same window idle).
    const idle = await cpuOver(PING_WINDOW_MS);
    const pings0 = pingsOf(all);
    traffic.set(1000);
    const pinging = await cpuOver(PING_WINDOW_MS);
    const pings = pingsOf(all) - pings0;
    traffic.set(30_000);
    const perPing = (us: number, idleUs: number) => (us - idleUs) / Math.max(1, pings);
    process.stderr.write(
      `  ${n} boards: live heap ${liveKiB.toFixed(2)} KiB per board, external ${externalKiB.toFixed(2)} KiB; ` +
        `one durable publish ${perPublish(publish.user + publish.system).toFixed(0)} us of CPU (user ${perPublish(publish.user).toFixed(0)}, sys ${perPublish(publish.system).toFixed(0)}); ` +
        `one PINGREQ/PINGRESP ${perPing(pinging.user + pinging.system, idle.user + idle.system).toFixed(1)} us (${pings} pings)\n`,
    );
    return [
      { benchmark: `MQTT side of a board (BrokerSession + mqtt.js + DurableOutbox + OutboxPump), ${n} boards on Mosquitto: live heap`, measured: `${liveKiB.toFixed(2)} KiB per board (+ ${externalKiB.toFixed(2)} KiB external)`, limit: '-', ratio: '-' },
      { benchmark: `MQTT side of a board, ${n} boards: CPU of one durable QoS 1 publish (journal write + fsync, PUBACK, ack record, fd reopened)`, measured: `${perPublish(publish.user + publish.system).toFixed(0)} us (user ${perPublish(publish.user).toFixed(0)}, sys ${perPublish(publish.system).toFixed(0)})`, limit: '-', ratio: '-' },
      { benchmark: `MQTT side of a board, ${n} boards: CPU of one keepalive PINGREQ/PINGRESP (above idle)`, measured: `${perPing(pinging.user + pinging.system, idle.user + idle.system).toFixed(1)} us (user ${perPing(pinging.user, idle.user).toFixed(1)}, sys ${perPing(pinging.system, idle.system).toFixed(1)})`, limit: '-', ratio: '-' },
    ];
  } finally {
    await Promise.all(all.map(async (b) => {
      await b.pump.stop();
      await b.session.stop();
      await b.outbox.close();
    }));
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { printTable } = await import('./support.ts');
  printTable('MQTT side of a board', await mqttSessionHeap());
  process.exit(0);
}
