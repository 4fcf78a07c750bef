// Benchmark: fleet scale (issue 15). N simulated boards (protocol level, each behind its own TCP
// bridge, in child processes of their own: bench/fleet-sims.ts) on one `tether daemon` process,
// heartbeats at 1 Hz, one MQTT session per board on a real Mosquitto. Measured from outside the
// daemon once every board is ready and the start's tail is over (30 s: the last first facts, the
// heap handed back; reported on a row of its own): CPU (/proc/PID/stat) and RSS (/proc/PID/status) per board,
// the event-loop delay p99 the daemon itself measures (its metrics endpoint,
// tether_event_loop_delay_seconds, perf_hooks monitorEventLoopDelay), the time from spawning the
// daemon until every board's $state is ready, and file descriptors per board (/proc/PID/fd).
// Each against the goal of issue 15. Every wait has a deadline and says what it waited for.
//
//   TETHER_BENCH_FLEET=1000,5000,10000   fleet sizes (default)
//   TETHER_BENCH_FLEET_MEASURE_MS=60000  steady-state window (long enough to hold an old-generation GC)
//   TETHER_BENCH_FLEET_PROFILE=DIR       run the daemon with --cpu-prof (and --heap-prof) into DIR
//   TETHER_BENCH_FLEET_CLI=PATH          another build's bin/tether.js (before/after pairs)
//   TETHER_BENCH_FLEET_NODE_ARGS='...'   extra node flags for the daemon (trying runtime settings)
//   TETHER_BENCH_FLEET_FIRST_PORT=12000  first port of the simulated boards' bridges
//   TETHER_BENCH_FLEET_LOG_LEVEL=warn    the daemon's log level (info shows each board's claim, for start-up timelines)
//   TETHER_BENCH_FLEET_DAEMON_OUT=FILE   the daemon's whole stdout and stderr into FILE (e.g. with --trace-gc)
//   TETHER_BENCH_FLEET_BEATS=0           keepalive.beats false: a PING to each board every interval (before/after pairs)
//   TETHER_BENCH_FLEET_DAEMON_CPU=0      the CPU the daemon runs on alone (taskset), the boards' simulators,
//                                        Mosquitto and the bench on the others; `none`: all share every CPU
//                                        (the rows before round 13). Default 0 on 2 or more CPUs.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { freePort } from '../test/support/free-port.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { printTable, sleep, type Row } from './support.ts';
import { HEAP_SETTLE_QUIET_MS, HEAP_SETTLE_REDUCE_MS } from '../cli/daemon-heap-settler.ts';

const CLI = process.env.TETHER_BENCH_FLEET_CLI ?? fileURLToPath(new URL('../bin/tether.js', import.meta.url));
const BEATS = process.env.TETHER_BENCH_FLEET_BEATS !== '0';
const NODE_ARGS = (process.env.TETHER_BENCH_FLEET_NODE_ARGS ?? '').split(' ').filter(Boolean);
/**
 * The node flags the systemd unit runs the daemon with (its ExecStart line): the bench runs the
 * same. The unit beside the CLI that runs (none beside a bare build copy: no flags, as before).
 */
const UNIT_NODE_ARGS = (() => {
  const path = join(dirname(CLI), '..', 'packaging', 'tether.service');
  if (!existsSync(path)) return [];
  const unit = readFileSync(path, 'utf8');
  const exec = unit.split('\n').find((l) => l.startsWith('ExecStart='));
  if (!exec) throw new Error('packaging/tether.service has no ExecStart= line');
  const words = exec.slice('ExecStart='.length).trim().split(/\s+/);
  const script = words.findIndex((w) => w.endsWith('/tether.js'));
  return words.slice(1, script).filter((w) => w.startsWith('--'));
})();
const SIMS = fileURLToPath(new URL('./fleet-sims.ts', import.meta.url));
const SIZES = (process.env.TETHER_BENCH_FLEET ?? '1000,5000,10000').split(',').map(Number);
const MEASURE_MS = Number(process.env.TETHER_BENCH_FLEET_MEASURE_MS ?? 60_000);
const PROFILE_DIR = process.env.TETHER_BENCH_FLEET_PROFILE;
/**
 * The CPU the daemon runs on alone (issue 15's goal is for "one core"): on a gateway the boards
 * are microcontrollers of their own, while here their simulators (about a fifth of a core at
 * 9,900), Mosquitto and the bench would otherwise take turns on the daemon's core. Undefined:
 * everything shares every CPU.
 */
const DAEMON_CPU_SETTING = process.env.TETHER_BENCH_FLEET_DAEMON_CPU ?? (os.cpus().length >= 2 ? '0' : 'none');
const DAEMON_CPU = DAEMON_CPU_SETTING === 'none' ? undefined : DAEMON_CPU_SETTING;
const DAEMON_OUT = process.env.TETHER_BENCH_FLEET_DAEMON_OUT;
/** Boards per simulator process: its listening and accepted sockets stay under the fd limit. */
const SIMS_PER_PROCESS = 4000;
/**
 * Ports below Linux's ephemeral range (32768-60999), so the daemon's outgoing sockets never
 * collide; TETHER_BENCH_FLEET_FIRST_PORT moves them (two benches at once on one machine).
 */
const FIRST_SIM_PORT = Number(process.env.TETHER_BENCH_FLEET_FIRST_PORT ?? 12_000);
/**
 * From all ready until the window: the start's tail, not steady state. The last boards' first
 * facts go out, and the daemon hands the start-up's heap back once no board session came up for
 * HEAP_SETTLE_QUIET_MS and then for HEAP_SETTLE_REDUCE_MS (cli/daemon-heap-settler.ts). Its
 * CPU, event-loop delay and heap are reported on a row of their own.
 */
const TAIL_MS = HEAP_SETTLE_QUIET_MS + HEAP_SETTLE_REDUCE_MS + 10_000;
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** The goals of issue 15, per board at steady state. */
const GOAL = { cpuMilliPct: 3, rssKiB: 64, readyS: 30, eldP99Ms: 20, fds: 2 };

interface FleetResult {
  n: number;
  readyS: number;
  cpuPct: number;
  rssMiB: number;
  eldP99Ms: number;
  eldMaxMs: number;
  /** Share of the window the daemon's main thread was ready to run but waited for a CPU (%). */
  runQueueWaitPct: number;
  fds: number;
  /** Open descriptors on the boards' outbox journals (`*.outbox`) at the end of the window. */
  outboxFds: number;
  /** process.memoryUsage() in MiB at the end of the window (the daemon's metrics endpoint). */
  memory: Record<string, number>;
  simCpuPct: number;
  /** Heartbeats (PONGs and BEATs) the daemon heard per board per second over the window. */
  heartbeatsPerBoardS: number;
  /** MQTT messages from the boards' topics per board per minute during the window. */
  messagesPerBoardMin: number;
  /** The machine's 1-minute load average at the end (other work on the machine skews every figure). */
  load: number;
  /** Boards whose $state was ready at the end of the window. */
  readyAtEnd: number;
  /** Daemon CPU seconds (all threads) from its start until all were ready. */
  readyCpuS: number;
  /** The start's tail (TAIL_MS after all ready): daemon CPU seconds, event-loop delay, V8 heap committed at its start and end (MiB). */
  tail: { cpuS: number; eldP99Ms: number; eldMaxMs: number; heapBefore: number; heapAfter: number };
  /** One full metrics scrape after the window (s), its size, and the longest event-loop delay over it. */
  scrapeS: number;
  scrapeMiB: number;
  scrapeEldMaxMs: number;
}

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

/** The main thread's user and system ticks (the event loop) apart from the other threads' (GC helpers, libuv pool). */
function mainThreadTicks(pid: number): { user: number; sys: number } {
  const fields = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(fields[11]), sys: Number(fields[12]) };
}

/**
 * Nanoseconds the main thread has run and waited on a run queue (ready, but no CPU free): the
 * event loop's delay includes that wait, which is the machine's contention, not the daemon's work.
 */
function mainThreadSchedstat(pid: number): { runNs: number; waitNs: number } {
  const [run, wait] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(' ');
  return { runNs: Number(run), waitNs: Number(wait) };
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Open descriptors on `*.outbox` journal files. */
function outboxFds(pid: number): number {
  let count = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).endsWith('.outbox')) count++;
    } catch {
      // closed meanwhile
    }
  }
  return count;
}

/** Resolves with `promise`, or rejects after `ms` naming `what`. */
async function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for `check` every 200 ms until `ms`; the error names `what` and `detail()`. */
async function until(check: () => boolean, ms: number, what: string, detail: () => string): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what} (${detail()})`);
    await sleep(200);
  }
}

/** Stops a child with SIGTERM, SIGKILL after `ms`. */
async function stopChild(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  try {
    await deadline(exited, ms, `pid ${child.pid} to exit after SIGTERM`);
  } catch {
    child.kill('SIGKILL');
    await deadline(exited, 5000, `pid ${child.pid} to exit after SIGKILL`);
  }
}

interface Sims {
  targets: string[];
  pids: number[];
  stop(): Promise<void>;
}

async function startSims(n: number): Promise<Sims> {
  const children: ChildProcess[] = [];
  const targets: string[] = [];
  let port = FIRST_SIM_PORT;
  const stop = () => Promise.all(children.map((c) => stopChild(c, 10_000))).then(() => {});
  try {
    for (let done = 0; done < n; ) {
      const count = Math.min(SIMS_PER_PROCESS, n - done);
      const child = spawn(process.execPath, ['--import', 'tsx', SIMS, String(count), String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
      children.push(child);
      const line = await deadline(
        new Promise<string>((resolve, reject) => {
          createInterface({ input: child.stdout! }).once('line', resolve);
          child.once('exit', (code) => reject(new Error(`the simulator process exited (${code}) before serving its boards`)));
        }),
        120_000,
        `${count} simulated boards to listen`,
      );
      const started = JSON.parse(line) as { targets: string[]; nextPort: number };
      targets.push(...started.targets);
      port = started.nextPort;
      done += count;
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { targets, pids: children.map((c) => c.pid!), stop };
}

/** All boards' heartbeats so far (tether_device_heartbeats_total summed), and when. */
async function scrapeHeartbeats(url: string): Promise<{ total: number; at: number }> {
  const text = await deadline(fetch(`${url}?name=tether_device_heartbeats_total`).then((r) => r.text()), 60_000, `the daemon's heartbeat counters at ${url}`);
  let total = 0;
  for (const m of text.matchAll(/^tether_device_heartbeats_total\{[^}]*\} (\S+)$/gm)) total += Number(m[1]);
  return { total, at: performance.now() };
}

/** The daemon's own event-loop delay since the previous scrape (ms), and its memory by kind (MiB). */
async function scrapeLoopDelay(url: string): Promise<{ p99: number; max: number; memory: Record<string, number> }> {
  // Only these two: a full scrape (timed apart, below) would land in the window.
  const text = await deadline(
    fetch(`${url}?name=tether_event_loop_delay_seconds&name=tether_process_memory_bytes`).then((r) => r.text()),
    60_000,
    `the daemon's metrics at ${url}`,
  );
  const value = (q: string) => {
    const m = text.match(new RegExp(`^tether_event_loop_delay_seconds\\{quantile="${q.replace('.', '\\.')}"\\} (\\S+)$`, 'm'));
    if (!m) return Number.NaN; // a daemon from before issue 15 does not report it
    return Number(m[1]) * 1000;
  };
  const memory: Record<string, number> = {};
  for (const m of text.matchAll(/^tether_process_memory_bytes\{kind="(\w+)"\} (\S+)$/gm)) memory[m[1]!] = Number(m[2]) / 2 ** 20;
  return { p99: value('0.99'), max: value('1'), memory };
}

/** The soft limit on open files, which the daemon inherits from this process. */
function openFileLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))!;
  return Number(line.split(/\s+/)[3]);
}

async function measure(n: number, brokerUrl: string): Promise<FleetResult> {
  // At least a link and an MQTT socket per board: beyond the limit it cannot start (ulimit -n).
  if (2 * n + 64 > openFileLimit()) throw new Error(`${n} boards need more than ${2 * n + 64} open files; the limit here is ${openFileLimit()} (ulimit -n; raise it, e.g. LimitNOFILE= under systemd)`);
  const sims = await startSims(n);
  const dir = mkdtempSync(join(tmpdir(), `tether-fleet-${n}-`));
  const metricsPort = await freePort();
  const config = {
    gateway: { id: 'fleet-gw' },
    broker: { url: brokerUrl, keepaliveSec: 30 },
    queue: { dir: join(dir, 'queue') },
    log: { level: process.env.TETHER_BENCH_FLEET_LOG_LEVEL ?? 'warn' },
    metrics: { port: metricsPort },
    devices: sims.targets.map((target, i) => ({ id: `sim-${i}`, port: target, keepalive: { intervalMs: 1000, misses: 3, beats: BEATS } })),
  };
  writeFileSync(join(dir, 'tether.yaml'), stringify(config));
  const watcher = await deadline(mqtt.connectAsync(brokerUrl, { protocolVersion: 5, reconnectPeriod: 0 }), 10_000, 'the bench watcher to connect');
  const ready = new Set<string>();
  /** Messages from the boards by property, counted during the measurement window. */
  let counting: Map<string, number> | null = null;
  watcher.on('message', (topic, payload) => {
    const [, , id, ...rest] = topic.split('/');
    if (id === 'fleet-gw' || id === undefined) return;
    if (counting) counting.set(rest.join('/'), (counting.get(rest.join('/')) ?? 0) + 1);
    if (rest.join('/') !== '$state') return;
    if (payload.toString() === 'ready') ready.add(id);
    else ready.delete(id);
  });
  // Until the window only the boards' $state: a watcher taking every start-up message (~12 a
  // board) would spend a sixth of a core of these two, on the daemon's start (round 8).
  const STATES = 'homie/5/+/$state';
  await deadline(watcher.subscribeAsync(STATES, { qos: 0 }), 10_000, 'the bench watcher to subscribe');
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-3000));
  const args = PROFILE_DIR ? [`--cpu-prof`, `--cpu-prof-dir=${PROFILE_DIR}`, '--heap-prof', `--heap-prof-dir=${PROFILE_DIR}`] : [];
  const started = performance.now();
  const daemonArgv = [process.execPath, ...UNIT_NODE_ARGS, ...NODE_ARGS, ...args, CLI, 'daemon', '--config', join(dir, 'tether.yaml')];
  // taskset execs node in its own process: the pid stays the daemon's.
  const pinned = DAEMON_CPU === undefined ? daemonArgv : ['taskset', '-c', DAEMON_CPU, ...daemonArgv];
  const daemon = spawn(pinned[0]!, pinned.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  daemon.stdout!.on('data', keep);
  daemon.stderr!.on('data', keep);
  if (DAEMON_OUT) {
    const file = createWriteStream(DAEMON_OUT);
    daemon.stdout!.pipe(file, { end: false });
    daemon.stderr!.pipe(file, { end: false });
    daemon.once('exit', () => file.end());
  }
  // How the boards become ready over time (where the start-up spends its time).
  const progress = setInterval(() => process.stderr.write(`  ${((performance.now() - started) / 1000).toFixed(0)} s: ${ready.size} of ${n} ready\n`), 5000);
  const pid = daemon.pid!;
  const fdLimit = openFileLimit();
  const alive = () => {
    if (daemon.exitCode !== null || daemon.signalCode !== null) throw new Error(`the daemon exited (${daemon.exitCode ?? daemon.signalCode}): ${output.trim()}`);
    const fds = openFds(pid);
    if (fds >= fdLimit - 2) throw new Error(`the daemon reached its open-file limit (${fds} of ${fdLimit}, ulimit -n) with ${ready.size} of ${n} boards ready`);
    return true;
  };
  try {
    await until(
      () => alive() && ready.size >= n,
      Math.max(120_000, n * 30),
      `all ${n} boards ready`,
      () => `${ready.size} ready, daemon fds ${openFds(pid)}; daemon output: ${output.trim().slice(-500)}`,
    );
    const readyS = (performance.now() - started) / 1000;
    // CPU time the start-up took (robust where wall time is not: other work on the same cores).
    const readyCpuS = cpuTicks(pid) / CLOCK_TICKS;
    const readyMain = mainThreadTicks(pid);
    const readyWaitS = mainThreadSchedstat(pid).waitNs / 1e9;
    process.stderr.write(
      `  all ready after ${readyS.toFixed(1)} s, daemon CPU until then ${readyCpuS.toFixed(1)} s (main thread user ${(readyMain.user / CLOCK_TICKS).toFixed(1)} s + system ${(readyMain.sys / CLOCK_TICKS).toFixed(1)} s; it waited for a free CPU ${readyWaitS.toFixed(1)} s)\n`,
    );
    clearInterval(progress);
    // The start's tail (TAIL_MS): measured apart, it is not steady state.
    const atReady = await scrapeLoopDelay(`http://127.0.0.1:${metricsPort}/metrics`);
    const tailC0 = cpuTicks(pid);
    await sleep(TAIL_MS);
    const afterTail = await scrapeLoopDelay(`http://127.0.0.1:${metricsPort}/metrics`);
    const tail = {
      cpuS: (cpuTicks(pid) - tailC0) / CLOCK_TICKS,
      eldP99Ms: afterTail.p99,
      eldMaxMs: afterTail.max,
      heapBefore: atReady.memory.heap_total ?? Number.NaN,
      heapAfter: afterTail.memory.heap_total ?? Number.NaN,
    };
    // Everything from now on (Retain Handling 2: none of the retained values again), for the
    // window's message count; then $state alone is dropped (a moment of both: `ready` is a set).
    await deadline(watcher.subscribeAsync('homie/5/#', { qos: 0, rh: 2 }), 30_000, 'the bench watcher to subscribe to every board message');
    await deadline(watcher.unsubscribeAsync(STATES), 30_000, 'the bench watcher to unsubscribe from $state alone');
    const beats0 = await scrapeHeartbeats(`http://127.0.0.1:${metricsPort}/metrics`);
    await sleep(1000); // the scrape's own work is not part of the window
    alive();
    const t0 = performance.now();
    const c0 = cpuTicks(pid);
    const m0 = mainThreadTicks(pid);
    const q0 = mainThreadSchedstat(pid);
    const s0 = sims.pids.map(cpuTicks);
    counting = new Map();
    await sleep(MEASURE_MS);
    const published = counting;
    counting = null;
    const seconds = (performance.now() - t0) / 1000;
    const cpuPct = ((cpuTicks(pid) - c0) / CLOCK_TICKS / seconds) * 100;
    const m1 = mainThreadTicks(pid);
    const runQueueWaitPct = ((mainThreadSchedstat(pid).waitNs - q0.waitNs) / 1e9 / seconds) * 100;
    const pct = (ticks: number) => ((ticks / CLOCK_TICKS / seconds) * 100).toFixed(1);
    process.stderr.write(
      `  daemon CPU ${cpuPct.toFixed(1)} % of a core: main thread user ${pct(m1.user - m0.user)} % + system ${pct(m1.sys - m0.sys)} %, other threads ${pct(cpuTicks(pid) - c0 - (m1.user - m0.user) - (m1.sys - m0.sys))} %\n`,
    );
    const simCpuPct = (sims.pids.reduce((sum, p, i) => sum + cpuTicks(p) - s0[i]!, 0) / CLOCK_TICKS / seconds) * 100;
    const beats1 = await scrapeHeartbeats(`http://127.0.0.1:${metricsPort}/metrics`);
    const heartbeatsPerBoardS = (beats1.total - beats0.total) / n / ((beats1.at - beats0.at) / 1000);
    const rss = rssMiB(pid);
    const fds = openFds(pid);
    const journalFds = outboxFds(pid);
    const eld = await scrapeLoopDelay(`http://127.0.0.1:${metricsPort}/metrics`);
    const readyAtEnd = ready.size; // under load boards may go lost and back: reported, not hidden
    const scrapeStart = performance.now();
    const scrapeText = await deadline(fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()), 120_000, 'a full metrics scrape');
    const scrapeS = (performance.now() - scrapeStart) / 1000;
    const scrapeMiB = Buffer.byteLength(scrapeText) / 2 ** 20;
    // The loop's delay over the full scrape alone (what a Prometheus scraping it would cost).
    const scrapeEld = await scrapeLoopDelay(`http://127.0.0.1:${metricsPort}/metrics`);
    const perMinute = (count: number) => (count / n / seconds) * 60;
    const messages = [...published].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${perMinute(v).toFixed(2)}`);
    process.stderr.write(`  MQTT messages per board per minute at steady state: ${messages.join(', ') || 'none'}\n`);
    const messagesPerBoardMin = perMinute([...published.values()].reduce((a, b) => a + b, 0));
    return { n, readyS, cpuPct, rssMiB: rss, eldP99Ms: eld.p99, eldMaxMs: eld.max, runQueueWaitPct, fds, outboxFds: journalFds, memory: eld.memory, simCpuPct, heartbeatsPerBoardS, messagesPerBoardMin, load: os.loadavg()[0]!, readyAtEnd, scrapeS, scrapeMiB, scrapeEldMaxMs: scrapeEld.max, readyCpuS, tail };
  } finally {
    clearInterval(progress);
    await stopChild(daemon, 60_000);
    await watcher.endAsync(true);
    await sims.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const ratio = (value: number, goal: number) => `${(value / goal).toFixed(2)}x of the goal`;

function rows(r: FleetResult): Row[] {
  const per = (x: number) => x / r.n;
  const cpuMilli = per(r.cpuPct) * 1000;
  const rssKiB = per(r.rssMiB * 1024);
  const fds = per(r.fds);
  const name = `fleet of ${r.n} boards (1 Hz${BEATS ? '' : ', beats off'}, ${r.n} + 1 MQTT sessions${DAEMON_CPU === undefined ? ', every process on every CPU' : `, the daemon alone on CPU ${DAEMON_CPU}`})`;
  return [
    { benchmark: `${name}: daemon CPU per board`, measured: `${cpuMilli.toFixed(2)} m% (${r.cpuPct.toFixed(1)} % of a core; boards' own processes ${r.simCpuPct.toFixed(0)} %; ${r.heartbeatsPerBoardS.toFixed(3)} heartbeats per board per second heard, ${BEATS ? 'BEATs (the board sends them) and PONGs to the renewals every 30 s' : 'PONGs to a PING every second (beats off)'})`, limit: `<= ${GOAL.cpuMilliPct} m% per board`, ratio: ratio(cpuMilli, GOAL.cpuMilliPct) },
    { benchmark: `${name}: daemon RSS per board`, measured: `${rssKiB.toFixed(1)} KiB (${r.rssMiB.toFixed(0)} MiB; heap ${(r.memory.heap_used ?? NaN).toFixed(0)} used of ${(r.memory.heap_total ?? NaN).toFixed(0)}, external ${(r.memory.external ?? NaN).toFixed(0)} MiB)`, limit: `<= ${GOAL.rssKiB} KiB per board`, ratio: ratio(rssKiB, GOAL.rssKiB) },
    { benchmark: `${name}: all ready after start`, measured: `${r.readyS.toFixed(1)} s (daemon CPU until then ${r.readyCpuS.toFixed(1)} s; ${r.readyAtEnd} of ${r.n} still ready at the end of the window)`, limit: `<= ${GOAL.readyS} s`, ratio: ratio(r.readyS, GOAL.readyS) },
    { benchmark: `${name}: the start's tail (${TAIL_MS / 1000} s after all ready, before the window: the last first facts, the heap handed back)`, measured: `daemon CPU ${r.tail.cpuS.toFixed(1)} s, V8 heap ${r.tail.heapBefore.toFixed(0)} -> ${r.tail.heapAfter.toFixed(0)} MiB committed, event-loop delay p99 ${r.tail.eldP99Ms.toFixed(1)} ms (max ${r.tail.eldMaxMs.toFixed(0)} ms)`, limit: '-', ratio: '-' },
    { benchmark: `${name}: event-loop delay p99 (max)`, measured: `${r.eldP99Ms.toFixed(1)} ms (${r.eldMaxMs.toFixed(0)} ms); the main thread waited for a free CPU ${r.runQueueWaitPct.toFixed(1)} % of the window (run queue, /proc schedstat)`, limit: `< ${GOAL.eldP99Ms} ms`, ratio: ratio(r.eldP99Ms, GOAL.eldP99Ms) },
    { benchmark: `${name}: one full metrics scrape`, measured: `${r.scrapeS.toFixed(2)} s, ${r.scrapeMiB.toFixed(1)} MiB (longest event-loop delay over it ${r.scrapeEldMaxMs.toFixed(0)} ms: host/metrics/scrape-in-turns.ts)`, limit: '-', ratio: '-' },
    { benchmark: `${name}: MQTT messages per board at steady state`, measured: `${r.messagesPerBoardMin.toFixed(2)} a minute (load average ${r.load.toFixed(1)} on ${os.cpus().length} cores)`, limit: 'only news (keepalive-facts.ts)', ratio: '-' },
    { benchmark: `${name}: file descriptors per board`, measured: `${fds.toFixed(2)} (${r.fds} open, ${r.outboxFds} of them outbox journals)`, limit: `${GOAL.fds} (link + MQTT socket)`, ratio: ratio(fds, GOAL.fds) },
  ];
}

export async function fleetScale(): Promise<Row[]> {
  // The bench (all its threads) onto the other CPUs: Mosquitto and the simulators it starts inherit that.
  const restoreAffinity = DAEMON_CPU === undefined ? () => {} : keepOffCpu(DAEMON_CPU);
  // Never drop what was acknowledged to the bench's watcher (Mosquitto's default queue is 1000),
  // and no connection limit (its fd limit is this process's: see `ulimit -n`).
  const broker = await startMosquitto({ extraConfig: ['max_connections -1', 'max_queued_messages 0'] }).catch((err) => {
    restoreAffinity();
    throw err;
  });
  const out: Row[] = [];
  try {
    for (const n of SIZES) {
      process.stderr.write(`  fleet of ${n}...\n`);
      try {
        process.stderr.write(`  daemon node flags: ${[...UNIT_NODE_ARGS, ...NODE_ARGS].join(' ') || 'none'} (packaging/tether.service, TETHER_BENCH_FLEET_NODE_ARGS)${DAEMON_CPU === undefined ? '' : `; pinned to CPU ${DAEMON_CPU}`}\n`);
        const r = await measure(n, broker.url);
        process.stderr.write(`  ${JSON.stringify(r)}\n`);
        out.push(...rows(r));
      } catch (err) {
        out.push({ benchmark: `fleet of ${n} boards`, measured: `failed: ${(err as Error).message.slice(0, 300)}`, limit: '-', ratio: '-' });
      }
    }
  } finally {
    await broker.stop();
    restoreAffinity();
  }
  return out;
}

/** Moves this process (every thread) off `cpu` with taskset; returns what puts it back. */
function keepOffCpu(cpu: string): () => void {
  const all = os.cpus().map((_, i) => i);
  if (!all.includes(Number(cpu))) throw new Error(`TETHER_BENCH_FLEET_DAEMON_CPU=${cpu}: this machine has CPUs 0-${all.length - 1}`);
  const taskset = (...args: string[]) => execFileSync('taskset', args, { encoding: 'utf8' });
  const before = /: ([0-9a-f,]+)\s*$/.exec(taskset('-p', String(process.pid)))?.[1];
  if (!before) throw new Error('taskset -p did not say this process\'s CPU affinity');
  taskset('-a', '-p', '-c', all.filter((c) => c !== Number(cpu)).join(','), String(process.pid));
  return () => void taskset('-a', '-p', before, String(process.pid));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printTable('Fleet scale', await fleetScale());
  process.exit(0);
}
