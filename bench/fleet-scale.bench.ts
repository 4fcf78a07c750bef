// Benchmark 5: fleet scale. N simulated boards (protocol level, behind TCP bridges) on one
// `tether daemon` process, each with its own MQTT session on Mosquitto, heartbeats at 1 Hz:
// CPU (% of one core) and RSS of the daemon once every board is ready, and how both grow.
import { readFileSync } from 'node:fs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../emulator/simulator/tcp-device-server.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { printTable, sleep, type Row } from './support.ts';

const CLI = fileURLToPath(new URL('../bin/tether.js', import.meta.url));
const SIZES = (process.env.TETHER_BENCH_FLEET ?? '100,1000,5000').split(',').map(Number);
const MEASURE_MS = Number(process.env.TETHER_BENCH_FLEET_MEASURE_MS ?? 20_000);
const CLOCK_TICKS = 100; // USER_HZ on Linux

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

async function measure(n: number, brokerUrl: string): Promise<{ cpu: number; rss: number; readyS: number }> {
  const sims: DeviceOnTcp[] = [];
  for (let i = 0; i < n; i++) sims.push(await serveDeviceOverTcp({ bootId: i + 1 }));
  const dir = mkdtempSync(join(tmpdir(), `tether-fleet-${n}-`));
  const config = {
    gateway: { id: 'fleet-gw' },
    broker: { url: brokerUrl, keepaliveSec: 30 },
    queue: { dir: join(dir, 'queue') },
    log: { level: 'warn' },
    devices: sims.map((s, i) => ({ id: `sim-${i}`, port: s.target, keepalive: { intervalMs: 1000, misses: 3 } })),
  };
  writeFileSync(join(dir, 'tether.yaml'), stringify(config));
  const watcher = await mqtt.connectAsync(brokerUrl, { protocolVersion: 5 });
  const ready = new Set<string>();
  watcher.on('message', (topic, payload) => {
    const id = topic.split('/')[2]!;
    if (payload.toString() === 'ready') ready.add(id);
    else ready.delete(id);
  });
  await watcher.subscribeAsync('homie/5/+/$state', { qos: 1 });
  const started = performance.now();
  const daemon = spawn(process.execPath, [CLI, 'daemon', '--config', join(dir, 'tether.yaml')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const pid = daemon.pid!;
  while (ready.size < n + 1 && performance.now() - started < 300_000) await sleep(200);
  const readyS = (performance.now() - started) / 1000;
  if (ready.size < n + 1) throw new Error(`only ${ready.size - 1} of ${n} boards ready after ${readyS.toFixed(0)} s`);
  await sleep(3000); // settle after the start-up burst
  const t0 = performance.now();
  const c0 = cpuTicks(pid);
  await sleep(MEASURE_MS);
  const cpu = ((cpuTicks(pid) - c0) / CLOCK_TICKS / ((performance.now() - t0) / 1000)) * 100;
  const rss = rssMiB(pid);
  await new Promise<void>((resolve) => {
    daemon.once('exit', () => resolve());
    daemon.kill('SIGTERM');
  });
  await watcher.endAsync();
  for (const s of sims) await s.close();
  return { cpu, rss, readyS };
}

export async function fleetScale(): Promise<Row[]> {
  const broker = await startMosquitto();
  const rows: Row[] = [];
  const results: Array<{ n: number; cpu: number; rss: number }> = [];
  try {
    for (const n of SIZES) {
      process.stderr.write(`  fleet of ${n}...\n`);
      const r = await measure(n, broker.url);
      results.push({ n, ...r });
      const first = results[0]!;
      rows.push({
        benchmark: `fleet of ${n} boards, 1 Hz heartbeats, ${n + 1} MQTT sessions (all ready in ${r.readyS.toFixed(1)} s)`,
        measured: `CPU ${r.cpu.toFixed(1)} % of a core, RSS ${r.rss.toFixed(0)} MiB`,
        limit: `per board: ${((r.cpu / n) * 1000).toFixed(1)} m% CPU, ${((r.rss * 1024) / n).toFixed(0)} KiB`,
        ratio: n === first.n ? '1x' : `CPU ${(r.cpu / first.cpu).toFixed(1)}x, RSS ${(r.rss / first.rss).toFixed(1)}x for ${n / first.n}x boards`,
      });
    }
  } finally {
    await broker.stop();
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) printTable('Fleet scale', await fleetScale());
