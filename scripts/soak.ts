// `npm run soak [-- --minutes 30 --fault-every 180]`: the daemon for a long run with a fault
// injected every few minutes (broker kill -9, half-open broker link, hung board). The board
// (a simulated Uno behind a TCP bridge, reporting its analog pin at 1 kHz) counts: its analog
// value is a sequence number (a triangle of period 2046) that steps every 25 ms, and does not step while the
// board is hung, so every value it reports is one the subscriber must see. A persistent
// subscriber (QoS 1, its own session) checks the sequence: lost, duplicated and reordered
// messages are counted per fault (from the fault to the next one, recovery included). QoS 1
// is at least once: duplicates are allowed, losses are not. Also reports the daemon's RSS and
// open file descriptors over time (both must stay flat).
// The broker keeps its sessions across kill -9 only as far as Mosquitto can: persistence saved
// after every change (the soak checks the first save happened), no queue limit. What Mosquitto
// acknowledged with "no matching subscribers" is counted from its log, per window, and what it
// loses by itself on kill -9 is measured first, with no tether involved (--broker-check trials).
// `--faults kill,half-open,hang` picks the faults (in turn); `--trace DIR` keeps the daemon's log,
// Mosquitto's verbose log, every message received and the lost numbers, to follow one.
import { createWriteStream, existsSync, mkdirSync, rmSync, readdirSync, readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { open } from 'node:fs/promises';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { serveDeviceOverTcp } from '../emulator/simulator/tcp-device-server.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { onJsonLines } from '../test/support/json-lines.ts';
import { startTcpProxy } from '../test/support/tcp-proxy.ts';
import { waitFor } from '../test/support/wait-for.ts';

const CLI = fileURLToPath(new URL('../bin/tether.js', import.meta.url));
// The daemon runs the compiled dist/: build it first, so the soak never runs stale code.
execFileSync(process.execPath, [fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)), '-p', 'tsconfig.build.json'], {
  cwd: fileURLToPath(new URL('..', import.meta.url)),
  stdio: 'inherit',
});
const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    'fault-every': { type: 'string', default: '180' },
    'warm-up': { type: 'string', default: '20' },
    // Which faults, in turn (kill, half-open, hang): e.g. `--faults kill` to repeat one.
    faults: { type: 'string', default: 'kill,half-open,hang' },
    // Trials of the broker alone (kill -9 while streaming QoS 1 to an offline persistent subscriber).
    'broker-check': { type: 'string', default: '3' },
    // A folder for the daemon's log, Mosquitto's verbose log and every message received, to follow a number.
    trace: { type: 'string' },
  },
});
const minutes = Number(values.minutes);
const faultEveryS = Number(values['fault-every']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), 'tether-soak-'));
const trace = values.trace;
if (trace) mkdirSync(trace, { recursive: true });

/**
 * What the broker itself keeps on kill -9, measured with no tether in the way: a persistent
 * subscriber offline, a publisher streaming QoS 1 (16 in flight), kill -9 at a random moment,
 * then: which acknowledged messages the restarted broker still delivers. Mosquitto 2.0 sends
 * PUBACK while handling the PUBLISH (lib/packet_mosq.c packet__queue writes at once) and saves
 * its database later in the same pass of its loop (src/loop.c, autosave_on_changes): what it
 * acknowledged since its last completed save is gone after kill -9, whatever the config.
 */
async function brokerCheck(trials: number): Promise<Array<{ acked: number; highest: number; lost: number[] }>> {
  const results: Array<{ acked: number; highest: number; lost: number[] }> = [];
  for (let trial = 0; trial < trials; trial++) {
    const b = await startMosquitto({ persistenceDir: join(dir, `broker-check-${trial}`), keepAllQueued: true });
    const session = { clientId: 'check-sub', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 0 };
    const sub = await mqtt.connectAsync(b.url, session);
    await sub.subscribeAsync('check/seq', { qos: 1 });
    await sub.endAsync();
    const pub = await mqtt.connectAsync(b.url, { clientId: 'check-pub', reconnectPeriod: 0 });
    pub.on('error', () => {});
    const acked = new Set<number>();
    let next = 1;
    let streaming = true;
    const stream = async () => {
      while (streaming) {
        const n = next++;
        try {
          await pub.publishAsync('check/seq', String(n), { qos: 1 });
          acked.add(n);
        } catch {
          return; // the broker is gone
        }
      }
    };
    const streams = Array.from({ length: 16 }, stream);
    await sleep(300 + Math.random() * 700);
    await b.kill9();
    streaming = false;
    pub.end(true);
    await Promise.allSettled(streams);
    await b.restart();
    const back = mqtt.connect(b.url, { ...session, resubscribe: false });
    const got = new Set<number>();
    back.on('message', (_t, payload) => got.add(Number(payload.toString())));
    back.on('error', () => {});
    await new Promise((resolve) => back.once('connect', resolve));
    // Queued messages come at once after CONNACK; done when a second passes without one.
    for (let seen = -1; got.size !== seen; await sleep(1000)) seen = got.size;
    await back.endAsync();
    await b.stop();
    results.push({ acked: acked.size, highest: Math.max(0, ...acked), lost: [...acked].filter((n) => !got.has(n)).sort((x, y) => x - y) });
  }
  return results;
}
function mosquittoVersion(): string {
  const out = spawnSync('mosquitto', ['-h'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? ''; // -h exits 3
  return out.match(/version (\S+)/)?.[1] ?? 'unknown';
}
const brokerChecks = await brokerCheck(Number(values['broker-check']));

const brokerLogPath = join(trace ?? dir, 'mosquitto.log');
const broker = await startMosquitto({
  persistenceDir: join(dir, 'mosquitto'),
  // Mosquitto drops ("silently", mosquitto.conf(5)) what exceeds max_queued_messages (1000) for
  // a subscriber: 0 lifts it, so nothing the broker acknowledged is dropped that way.
  keepAllQueued: true,
  // Its log (line-buffered) is read as it grows: see watchBrokerLog.
  extraConfig: [`log_dest file ${brokerLogPath}`, 'log_type all', 'log_timestamp_format %H:%M:%S'],
});
const proxy = await startTcpProxy(broker.port);
// The board's sequence: steps every 25 ms while the board runs, reported at 1 kHz. On the pin
// it is a triangle (0 up to 1023 and back down, period 2046): consecutive numbers always
// differ by 1, so Johnny-Five's median filter never sees the jump of a wrap.
const STEP_MS = 25;
const PERIOD = 2046;
let boardSeq = 0;
let boardFrozen = false;
const stepper = setInterval(() => {
  if (!boardFrozen) boardSeq++;
}, STEP_MS);
const onPin = (n: number) => (n % PERIOD <= 1023 ? n % PERIOD : PERIOD - (n % PERIOD));
const sim = await serveDeviceOverTcp({ analog: () => onPin(boardSeq), reportEveryMs: 1 });
const config = {
  gateway: { id: 'soak-gw' },
  broker: { url: `mqtt://127.0.0.1:${proxy.port}`, keepaliveSec: 5, pingRespTimeoutMs: 2000, backoff: { initialMs: 100, maxMs: 2000 } },
  queue: { dir: join(dir, 'queue'), maxEntries: 1_000_000, maxBytes: 256 * 1024 * 1024 },
  log: { level: 'debug' }, // the soak reads "queued for the broker" lines; it prints warnings and errors only
  devices: [{ id: 'soak', port: sim.target, keepalive: { intervalMs: 500, misses: 3 }, components: [{ type: 'sensor', id: 'seq', pin: 'A0', freq: 5, threshold: 1 }] }],
};
writeFileSync(join(dir, 'tether.yaml'), stringify(config));

/**
 * Accounts for the sequence in two legs, per fault window (from a fault to the next one):
 * - board -> daemon: the board's steps, and the values the daemon queued in its durable outbox
 *   (its debug log line "queued for the broker"). Johnny-Five's Sensor samples the pin every
 *   `freq` ms, so a reading shorter than an event loop stall (startup, a burst) is never seen:
 *   that is sampling, not delivery, and is shown as "not sampled".
 * - daemon -> subscriber, the delivery guarantee: every value queued must reach the
 *   persistent subscriber. Lost = queued but never received; duplicated = received again (QoS 1
 *   is at least once: allowed); reordered = received after a later number.
 * Pin values are placed at the sequence number they can stand for nearest the one after the
 * highest seen so far on that leg (forward on a tie), the first one nearest the board's count.
 */
interface Window {
  what: string;
  notes: Set<string>;
  boardFrom: number;
  steps: number;
  queued: number;
  received: number;
  lost: number;
  duplicated: number;
  reordered: number;
  /** Sequence values Mosquitto acknowledged to the daemon with "no matching subscribers" (MQTT 5 PUBACK 0x10): dropped by the broker. */
  noSubscriber: number;
}

class SequenceCheck {
  readonly windows: Window[] = [];
  private readonly queuedIn = new Map<number, number>(); // number -> window it was queued in
  private readonly received = new Set<number>();
  private highestQueued: number | null = null;
  private highestReceived: number | null = null;
  /** Sequence numbers queued and never received (after finish()). */
  readonly lostNumbers: number[] = [];

  constructor(
    first: string,
    private readonly boardNow: () => number,
  ) {
    this.open(first);
  }

  open(what: string): void {
    const now = this.boardNow();
    const last = this.windows.at(-1);
    if (last) last.steps = now - last.boardFrom;
    this.windows.push({ what, notes: new Set(), boardFrom: now, steps: 0, queued: 0, received: 0, lost: 0, duplicated: 0, reordered: 0, noSubscriber: 0 });
  }

  brokerDroppedOne(): void {
    this.windows.at(-1)!.noSubscriber++;
  }

  note(text: string): void {
    this.windows.at(-1)!.notes.add(text);
  }

  queued(value: number): void {
    const u = nearest(value, this.highestQueued === null ? this.boardNow() : this.highestQueued + 1);
    if (this.queuedIn.has(u)) return;
    this.queuedIn.set(u, this.windows.length - 1);
    this.windows.at(-1)!.queued++;
    this.highestQueued = Math.max(u, this.highestQueued ?? u);
  }

  receive(value: number): void {
    const w = this.windows.at(-1)!;
    w.received++;
    const u = nearest(value, this.highestReceived === null ? this.boardNow() : this.highestReceived + 1);
    if (this.received.has(u)) {
      w.duplicated++;
      return;
    }
    this.received.add(u);
    if (this.highestReceived !== null && u < this.highestReceived) w.reordered++;
    this.highestReceived = Math.max(u, this.highestReceived ?? u);
  }

  /** Queued and not received (yet). */
  missing(): number {
    let n = 0;
    for (const u of this.queuedIn.keys()) if (!this.received.has(u)) n++;
    return n;
  }

  /** After the drain: whatever was queued and never received is lost, in the window it was queued in. */
  finish(): void {
    this.open('(end)');
    this.windows.pop();
    for (const [n, window] of this.queuedIn) {
      if (this.received.has(n)) continue;
      this.windows[window]!.lost++;
      this.lostNumbers.push(n);
    }
  }
}

/** The sequence number nearest `near` (forward on a tie) whose pin value is `value`. */
function nearest(value: number, near: number): number {
  const base = near - (((near % PERIOD) + PERIOD) % PERIOD);
  let best = NaN;
  for (const offset of [-PERIOD, 0, PERIOD]) {
    for (const k of [value, PERIOD - value]) {
      const u = base + offset + (k % PERIOD);
      if (Number.isNaN(best) || Math.abs(u - near) < Math.abs(best - near) || (Math.abs(u - near) === Math.abs(best - near) && u > best)) best = u;
    }
  }
  return best;
}

const check = new SequenceCheck('warm-up', () => boardSeq);

/**
 * Follows Mosquitto's own account, so that a loss at the broker is shown as the broker's: a
 * sequence value it acknowledged to the daemon with "no matching subscribers" (reason 0x10: the
 * subscriber's subscription was gone, e.g. a restart without its session) was dropped there,
 * and a failed database save means a kill -9 brings back less than it acknowledged.
 */
function watchBrokerLog(): () => Promise<void> {
  const seqMids = new Set<string>(); // message ids of the daemon's in-flight PUBLISHes on the sequence topic
  let offset = 0;
  let rest = '';
  let reading: Promise<void> = Promise.resolve();
  const readMore = async () => {
    const file = await open(brokerLogPath, 'r').catch(() => null);
    if (!file) return;
    try {
      for (;;) {
        const { bytesRead, buffer } = await file.read(Buffer.alloc(256 * 1024), 0, 256 * 1024, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        const lines = (rest + buffer.subarray(0, bytesRead).toString()).split('\n');
        rest = lines.pop()!;
        for (const line of lines) {
          const pub = line.match(/Received PUBLISH from tether\.board\.soak \(d\d, q\d, r\d, m(\d+), '([^']*)'/);
          if (pub) {
            if (pub[2] === 'homie/5/soak/seq/value') seqMids.add(pub[1]!);
            else seqMids.delete(pub[1]!);
            continue;
          }
          const ack = line.match(/Sending PUBACK to tether\.board\.soak \(m(\d+), rc(\d+)\)/);
          if (ack && seqMids.delete(ack[1]!) && ack[2] === '16') check.brokerDroppedOne();
          else if (line.includes('Error saving in-memory database')) check.note('Mosquitto failed to save its database');
        }
      }
    } finally {
      await file.close();
    }
  };
  const timer = setInterval(() => (reading = reading.then(readMore)), 100);
  return async () => {
    clearInterval(timer);
    await (reading = reading.then(readMore));
  };
}
const stopBrokerLog = watchBrokerLog();
let receivedCount = 0;
// A persistent session, subscribed again on every connect (a broker killed with -9 may come
// back without the subscription); retained copies (sent on subscribing) are not new messages.
const watcher = await mqtt.connectAsync(broker.url, {
  clientId: 'soak-watch',
  clean: false,
  protocolVersion: 5,
  properties: { sessionExpiryInterval: 3600 },
  reconnectPeriod: 200,
  resubscribe: false,
});
const subscribe = () => watcher.subscribeAsync('homie/5/soak/seq/value', { qos: 1, rh: 1 }).catch(() => {});
// connectAsync resolved on the first CONNACK: every 'connect' from here on is a reconnect.
watcher.on('connect', (connack) => {
  // A broker that comes back without the subscriber's session (sessionPresent false) has lost
  // its subscription and what it had queued for it: said in the window.
  if (!connack.sessionPresent) check.note('the broker came back without the subscriber\'s session');
  void subscribe();
});
let notANumber = 0;
const received = trace ? createWriteStream(join(trace, 'received.jsonl')) : null;
watcher.on('message', (_topic, payload, packet) => {
  received?.write(`${JSON.stringify({ t: new Date().toISOString(), mid: packet.messageId, retain: packet.retain, dup: packet.dup, payload: payload.toString() })}\n`);
  if (packet.retain) return;
  const value = payload.length > 0 ? Number(payload.toString()) : NaN;
  if (!Number.isInteger(value)) {
    notANumber++;
    return;
  }
  receivedCount++;
  check.receive(value);
});
await subscribe();
// The subscription must be on disk before any fault: a broker that cannot save (e.g. a missing
// persistence folder) comes back from kill -9 empty, and the loss would be the soak's setup.
await waitFor(() => existsSync(join(dir, 'mosquitto', 'mosquitto.db')), { timeoutMs: 10_000, what: 'Mosquitto to save its database' });

const daemon = spawn(process.execPath, [CLI, 'daemon', '--config', join(dir, 'tether.yaml')], { stdio: ['ignore', 'pipe', 'inherit'] });
const daemonLog = trace ? createWriteStream(join(trace, 'daemon.jsonl')) : null;
onJsonLines<{ level: number; msg?: string; topic?: string; payload?: string }>(daemon.stdout!, (line) => {
  daemonLog?.write(`${JSON.stringify(line)}\n`);
  if (line.msg === 'queued for the broker' && line.topic === 'homie/5/soak/seq/value') check.queued(Number(line.payload));
  else if (line.level >= 40) process.stderr.write(`${JSON.stringify(line)}\n`);
});
const pid = daemon.pid!;
const rss = () => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)![1]) / 1024;
const fds = () => readdirSync(`/proc/${pid}/fd`).length;

await sleep(Number(values['warm-up']) * 1000); // warm-up
check.open('no fault');
const samples: Array<{ t: number; rss: number; fds: number; received: number }> = [];
const started = Date.now();
const sample = () => samples.push({ t: (Date.now() - started) / 1000, rss: rss(), fds: fds(), received: receivedCount });
sample();
const faultKinds: Record<string, { what: string; run: () => Promise<void> }> = {
  kill: {
    what: 'broker kill -9, back after 10 s',
    run: async () => {
      await broker.kill9();
      await sleep(10_000);
      await broker.restart();
    },
  },
  'half-open': {
    what: 'half-open broker link for 12 s',
    run: async () => {
      proxy.blackhole(true);
      await sleep(12_000);
      proxy.blackhole(false);
    },
  },
  hang: {
    what: 'board hung for 5 s',
    run: async () => {
      boardFrozen = true;
      sim.device.setFrozen(true);
      await sleep(5000);
      sim.device.setFrozen(false);
      boardFrozen = false;
    },
  },
};
const faults = values.faults.split(',').map((name) => {
  const kind = faultKinds[name.trim()];
  if (!kind) throw new Error(`--faults: unknown fault ${name} (known: ${Object.keys(faultKinds).join(', ')})`);
  return kind;
});
let faultIndex = 0;
const end = started + minutes * 60_000;
let nextFault = started + faultEveryS * 1000;
while (Date.now() < end) {
  await sleep(Math.max(0, Math.min(10_000, nextFault - Date.now())));
  sample();
  if (Date.now() >= nextFault) {
    const fault = faults[faultIndex++ % faults.length]!;
    check.open(fault.what);
    process.stderr.write(`${new Date().toISOString()} (${((Date.now() - started) / 1000).toFixed(0)} s): ${fault.what}\n`);
    await fault.run();
    nextFault += faultEveryS * 1000;
  }
}
// The last fault's window gets its full length too (its recovery is what it measures).
while (faultIndex > 0 && Date.now() < nextFault) {
  await sleep(Math.max(0, Math.min(10_000, nextFault - Date.now())));
  sample();
}
clearInterval(stepper); // the board stops counting: everything up to boardSeq must arrive
// Let the queue drain: until every value queued has arrived, or 60 s (what is missing then is lost).
await sleep(2000); // the last readings reach the daemon's log
await waitFor(() => check.missing() === 0, { timeoutMs: 60_000, intervalMs: 200, what: 'the drain' }).catch(() => {});
sample();
await stopBrokerLog();
check.finish();
if (trace) writeFileSync(join(trace, 'lost.json'), JSON.stringify(check.lostNumbers.map((n) => ({ n, pin: onPin(n) }))));
daemon.kill('SIGTERM');
await new Promise((r) => daemon.once('exit', r));
await watcher.endAsync();
await sim.close();
await proxy.close();
await broker.stop();
rmSync(dir, { recursive: true, force: true }); // queue, broker database and log (a verbose log grows ~2 MB a minute); --trace keeps what to read

const first = samples[0]!;
const last = samples.at(-1)!;
const mid = samples[Math.floor(samples.length / 2)]!;
console.log(`\nsoak: ${minutes} min, ${faultIndex} faults, ${new Date().toISOString().slice(0, 10)}`);
console.log(`| metric | after warm-up | half-way | end |`);
console.log(`| RSS MiB | ${first.rss.toFixed(0)} | ${mid.rss.toFixed(0)} | ${last.rss.toFixed(0)} |`);
console.log(`| open fds | ${first.fds} | ${mid.fds} | ${last.fds} |`);
console.log(`| messages received | ${first.received} | ${mid.received} | ${last.received} (${(last.received / ((last.t - first.t) || 1)).toFixed(0)}/s) |`);
console.log(`\nsequence from the board (${boardSeq} steps) through the daemon's outbox to the persistent subscriber, per fault (until the next one):`);
console.log('| fault | board steps | queued by the daemon (not sampled) | received | lost | duplicated | reordered | of those queued, dropped by the broker (no subscriber) |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const w of check.windows) console.log(`| ${w.what}${w.notes.size ? ` (${[...w.notes].join('; ')})` : ''} | ${w.steps} | ${w.queued} (${Math.max(0, w.steps - w.queued)}) | ${w.received} | ${w.lost} | ${w.duplicated} | ${w.reordered} | ${w.noSubscriber} |`);
const sum = (k: 'steps' | 'queued' | 'received' | 'lost' | 'duplicated' | 'reordered' | 'noSubscriber') => check.windows.reduce((t, w) => t + w[k], 0);
console.log(`| total | ${sum('steps')} | ${sum('queued')} | ${sum('received')} | ${sum('lost')} | ${sum('duplicated')} | ${sum('reordered')} | ${sum('noSubscriber')} |`);
if (notANumber > 0) console.log(`(${notANumber} messages were not a number and are not counted)`);
if (brokerChecks.length > 0) {
  console.log(`\nthe broker alone (Mosquitto ${mosquittoVersion()}, persistence saved after every change, no queue limit): kill -9 while a publisher streams QoS 1 to an offline persistent subscriber, ${brokerChecks.length} trials:`);
  console.log('| trial | acknowledged to the publisher | of those, not delivered after the restart |');
  console.log('| --- | --- | --- |');
  for (const [i, r] of brokerChecks.entries()) console.log(`| ${i + 1} | ${r.acked} | ${r.lost.length}${r.lost.length ? ` (number ${r.lost.join(', ')}; highest acknowledged ${r.highest})` : ''} |`);
  console.log(
    'Mosquitto writes PUBACK while it handles a PUBLISH and saves its database later in the same pass of its loop: what it acknowledged since its last completed save is lost on kill -9 (no setting changes that). ' +
      'The soak above is exposed to it only while its subscriber is offline or its in-flight window is full: Mosquitto writes a message to an online subscriber with room in that window before it sends the PUBACK (its log: PUBLISH to the subscriber, PUBACK, then the save).',
  );
}
process.exit(sum('lost') === 0 ? 0 : 1);
