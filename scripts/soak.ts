// `npm run soak [-- --minutes 30]`: the daemon under 1 kHz telemetry for a long run, with a
// fault injected every few minutes (broker kill -9, half-open broker link, bridge drop, hung
// board). Reports the daemon's RSS and open file descriptors over time (both must stay flat)
// and the rate of messages reaching a subscriber.
import { readdirSync, readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { serveDeviceOverTcp } from '../emulator/simulator/tcp-device-server.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { startTcpProxy } from '../test/support/tcp-proxy.ts';

const CLI = fileURLToPath(new URL('../bin/tether.js', import.meta.url));
const { values } = parseArgs({ options: { minutes: { type: 'string', default: '30' }, 'fault-every': { type: 'string', default: '180' } } });
const minutes = Number(values.minutes);
const faultEveryS = Number(values['fault-every']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), 'tether-soak-'));
const broker = await startMosquitto({ persistenceDir: join(dir, 'mosquitto') });
const proxy = await startTcpProxy(broker.port);
// A board whose light sensor changes every millisecond, reported at 1 kHz.
const sim = await serveDeviceOverTcp({ analog: (t) => 512 + Math.round(500 * Math.sin(t / 50)), reportEveryMs: 1 });
const config = {
  gateway: { id: 'soak-gw' },
  broker: { url: `mqtt://127.0.0.1:${proxy.port}`, keepaliveSec: 5, pingRespTimeoutMs: 2000, backoff: { initialMs: 100, maxMs: 2000 } },
  queue: { dir: join(dir, 'queue'), maxEntries: 1_000_000, maxBytes: 256 * 1024 * 1024 },
  log: { level: 'warn' },
  devices: [{ id: 'soak', port: sim.target, keepalive: { intervalMs: 500, misses: 3 }, components: [{ type: 'sensor', id: 'light', pin: 'A0', freq: 1, threshold: 1 }] }],
};
writeFileSync(join(dir, 'tether.yaml'), stringify(config));

let receivedCount = 0;
const watcher = await mqtt.connectAsync(broker.url, { clientId: 'soak-watch', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 200 });
watcher.on('message', () => receivedCount++);
await watcher.subscribeAsync('homie/5/soak/light/value', { qos: 1 });

const daemon = spawn(process.execPath, [CLI, 'daemon', '--config', join(dir, 'tether.yaml')], { stdio: ['ignore', 'inherit', 'inherit'] });
const pid = daemon.pid!;
const rss = () => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)![1]) / 1024;
const fds = () => readdirSync(`/proc/${pid}/fd`).length;

await sleep(20_000); // warm-up
const samples: Array<{ t: number; rss: number; fds: number; received: number }> = [];
const started = Date.now();
const sample = () => samples.push({ t: (Date.now() - started) / 1000, rss: rss(), fds: fds(), received: receivedCount });
sample();
const faults = [
  async () => {
    await broker.kill9();
    await sleep(10_000);
    await broker.restart();
    return 'broker kill -9, back after 10 s';
  },
  async () => {
    proxy.blackhole(true);
    await sleep(12_000);
    proxy.blackhole(false);
    return 'half-open broker link for 12 s';
  },
  async () => {
    sim.device.setFrozen(true);
    await sleep(5000);
    sim.device.setFrozen(false);
    return 'board hung for 5 s';
  },
];
let faultIndex = 0;
const end = started + minutes * 60_000;
let nextFault = started + faultEveryS * 1000;
while (Date.now() < end) {
  await sleep(10_000);
  sample();
  if (Date.now() >= nextFault) {
    const what = await faults[faultIndex++ % faults.length]!();
    process.stderr.write(`${((Date.now() - started) / 1000).toFixed(0)} s: ${what}\n`);
    nextFault += faultEveryS * 1000;
  }
}
await sleep(15_000); // let the queue drain
sample();
daemon.kill('SIGTERM');
await new Promise((r) => daemon.once('exit', r));
await watcher.endAsync();
await sim.close();
await proxy.close();
await broker.stop();

const first = samples[0]!;
const last = samples.at(-1)!;
const mid = samples[Math.floor(samples.length / 2)]!;
console.log(`\nsoak: ${minutes} min, ${faultIndex} faults, ${new Date().toISOString().slice(0, 10)}`);
console.log(`| metric | after warm-up | half-way | end |`);
console.log(`| RSS MiB | ${first.rss.toFixed(0)} | ${mid.rss.toFixed(0)} | ${last.rss.toFixed(0)} |`);
console.log(`| open fds | ${first.fds} | ${mid.fds} | ${last.fds} |`);
console.log(`| messages received | ${first.received} | ${mid.received} | ${last.received} (${(last.received / ((last.t - first.t) || 1)).toFixed(0)}/s) |`);
process.exit(0);
