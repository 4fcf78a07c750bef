// Benchmark: the floor under the fleet's CPU (issue 15). N plain node TCP sockets, each writing a
// 14-byte PING a second (spread over the second, as a fleet's boards are) to an echo server in
// other processes and reading the echo: the kernel's write and read per board per second and
// node's own work around them, with no tether code. Read with the fleet rows: what the daemon
// spends per board above this is its own. Two ways to read, as the daemon has read them:
// 'data' events (a Buffer per read) and `onread` into one shared buffer (how tcp:// links read).
//
//   TETHER_BENCH_FLOOR=5000          sockets
//   TETHER_BENCH_FLOOR_MEASURE_MS=15000
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { onceWithin, printTable, sleep, withDeadline, type Row } from './support.ts';

const N = Number(process.env.TETHER_BENCH_FLOOR ?? 5000);
const MEASURE_MS = Number(process.env.TETHER_BENCH_FLOOR_MEASURE_MS ?? 15_000);
const ECHO_PROCESSES = 3;
const TICK_MS = 10;
const PING = Buffer.from([0xf0, 0x7a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0xf7]);

type Mode = 'data' | 'onread';

async function floor(mode: Mode): Promise<{ cpuPct: number; userPct: number; sysPct: number; rssMiB: number; answered: number }> {
  const echoes: ChildProcess[] = [];
  const sockets: net.Socket[] = [];
  let answered = 0;
  try {
    const ports: number[] = [];
    for (let i = 0; i < ECHO_PROCESSES; i++) {
      const child = fork(fileURLToPath(import.meta.url), ['--echo'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      echoes.push(child);
      ports.push(Number(await onceWithin(child, 'message', 30_000, 'an echo server to listen')));
    }
    const shared = Buffer.allocUnsafe(64 * 1024);
    for (let i = 0; i < N; i++) {
      const options: net.NetConnectOpts & { onread?: unknown } = { host: '127.0.0.1', port: ports[i % ECHO_PROCESSES]!, noDelay: true };
      if (mode === 'onread') options.onread = { buffer: shared, callback: (n: number) => ((answered += n > 0 ? 1 : 0), true) };
      const socket = net.connect(options);
      socket.on('error', () => {});
      if (mode === 'data') socket.on('data', () => answered++);
      sockets.push(socket);
      if (i % 500 === 499) await sleep(0);
    }
    await withDeadline(Promise.all(sockets.map((s) => (s.readyState === 'open' ? null : new Promise((r) => s.once('connect', r))))), 60_000, `${N} sockets to connect`);
    // Each socket once a second, spread over the second.
    let next = 0;
    const perTick = Math.max(1, Math.round((N * TICK_MS) / 1000));
    const ticker = setInterval(() => {
      for (let k = 0; k < perTick; k++) {
        sockets[next]!.write(PING);
        next = (next + 1) % N;
      }
    }, TICK_MS);
    try {
      await sleep(3000); // settle
      answered = 0;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await sleep(MEASURE_MS);
      const c = process.cpuUsage(c0);
      const ms = performance.now() - t0;
      const pct = (us: number) => (us / 1000 / ms) * 100;
      return { cpuPct: pct(c.user + c.system), userPct: pct(c.user), sysPct: pct(c.system), rssMiB: process.memoryUsage().rss / 1048576, answered: (answered / ms) * 1000 };
    } finally {
      clearInterval(ticker);
    }
  } finally {
    for (const s of sockets) s.destroy();
    for (const e of echoes) e.kill();
  }
}

export async function socketFloor(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const mode of ['data', 'onread'] as const) {
    const r = await floor(mode);
    const per = (x: number) => ((x / N) * 1000).toFixed(2);
    rows.push({
      benchmark: `floor: ${N} plain node sockets, a 14-byte PING a second each to echo servers in other processes, read by ${mode === 'data' ? "'data' events" : 'onread into one buffer'}`,
      measured: `${per(r.cpuPct)} m% per socket (user ${per(r.userPct)} + kernel ${per(r.sysPct)}), ${r.answered.toFixed(0)} echoes/s, RSS ${r.rssMiB.toFixed(0)} MiB`,
      limit: 'what the fleet rows spend per board above this is tether\'s own',
      ratio: '-',
    });
  }
  return rows;
}

if (process.argv.includes('--echo')) {
  const server = net.createServer({ noDelay: true }, (s) => {
    s.on('data', (d) => s.write(d));
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as net.AddressInfo).port));
  process.on('disconnect', () => process.exit(0));
} else if (import.meta.url === `file://${process.argv[1]}`) {
  printTable('Socket floor', await socketFloor());
  process.exit(0);
}
