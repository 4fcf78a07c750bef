// Benchmark 2: dead-device detection latency. Freeze the emulated board at random phases of
// the ping cycle; time from the freeze to `lost`, against the configured bound; then thaw and
// wait for ready. Also: false `lost` over a long jittery run, fixed vs phi-accrual.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BoardOnPty } from '../emulator/avr/board-on-pty.ts';
import { FIRMWARE_HEX_PATH } from '../host/paths.ts';
import { DeviceLink } from '../host/link/device-link.ts';
import { DeviceSession } from '../host/session/device-session.ts';
import { PhiAccrualDetector } from '../host/session/phi-accrual-detector.ts';
import { percentile, printTable, sleep, withDeadline, type Row } from './support.ts';

const TRIALS = Number(process.env.TETHER_BENCH_FREEZES ?? 200);
const PING_MS = 100;
const MISSES = 3;


export async function detectionLatency(): Promise<Row[]> {
  const ptyPath = join(mkdtempSync(join(tmpdir(), 'tether-detect-')), 'uno');
  const board = await BoardOnPty.start({ hexPath: FIRMWARE_HEX_PATH, ptyPath });
  // Watchdog off for this run: a frozen board stays frozen until thawed.
  const link = new DeviceLink({
    target: ptyPath,
    session: { pingIntervalMs: PING_MS, misses: MISSES, deviceConfig: { watchdogMs: 0, policy: 'stay', hostTimeoutMs: 0, sleepMs: 8000, awakeMs: 1000 } },
  });
  link.start();
  await link.ready(15_000);
  const latencies: number[] = [];
  for (let i = 0; i < TRIALS; i++) {
    await sleep(Math.random() * PING_MS * 2); // a random phase
    const lost = link.nextState('lost', 10_000);
    const frozenAt = performance.now();
    board.uno.freeze();
    await lost;
    latencies.push(performance.now() - frozenAt);
    const ready = link.nextState('ready', 10_000);
    board.uno.thaw();
    await ready;
  }
  await withDeadline(link.close(), 10_000, 'the DeviceLink to close');
  await withDeadline(board.close(), 10_000, 'the emulated board to close');
  const sorted = latencies.sort((a, b) => a - b);
  const bound = PING_MS * MISSES;
  const rows: Row[] = [
    {
      benchmark: `time to lost after a freeze (p50 / p99 / max, ${TRIALS} freezes)`,
      measured: `${percentile(sorted, 50).toFixed(0)} / ${percentile(sorted, 99).toFixed(0)} / ${sorted.at(-1)!.toFixed(0)} ms`,
      limit: `${bound} ms after the last PONG (${PING_MS} ms x ${MISSES})`,
      ratio: `${(percentile(sorted, 99) / bound).toFixed(2)}x (p99)`,
    },
  ];
  rows.push(...(await falseLost()));
  return rows;
}

/** A long simulated run with RTT jitter (fake time): false `lost` by detector. */
async function falseLost(): Promise<Row[]> {
  const HOURS = 24;
  const run = async (detector?: PhiAccrualDetector) => {
    let now = 0;
    const timers: Array<{ at: number; fn: () => void; id: number }> = [];
    let nextId = 1;
    const clock = {
      now: () => now,
      setTimeout: (fn: () => void, ms: number) => {
        const id = nextId++;
        timers.push({ at: now + ms, fn, id });
        return id as unknown as NodeJS.Timeout;
      },
      clearTimeout: (h: unknown) => {
        const i = timers.findIndex((t) => t.id === (h as number));
        if (i >= 0) timers.splice(i, 1);
      },
    };
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    let lostCount = 0;
    const session: DeviceSession = new DeviceSession({
      clock,
      pingIntervalMs: 1000,
      misses: 3,
      detector,
      send: (m) => {
        if (m.type === 'hello-request') clock.setTimeout(() => session.receive({ type: 'hello', fwMajor: 1, fwMinor: 0, bootId: 1, resetCauses: [], stateSurvived: false, pinsRestored: false, reply: true, watchdogMs: 0, policy: 'stay', hostTimeoutMs: 0, capabilities: { watchdog: true, sleep: true, state: true, pinRestore: true, beats: false }, stateSize: 32, name: 't' }), 10);
        if (m.type === 'ping') {
          // A badly jittery link (a congested TCP bridge): RTT anywhere from 20 ms to 2.5 s.
          const rtt = 20 + rand() * 2500;
          clock.setTimeout(() => session.receive({ type: 'pong', seq: m.seq, uptimeMs: 0, bootId: 1, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 }), rtt);
        }
      },
      sendRaw: () => {},
    });
    session.on('state', (c) => c.to === 'lost' && lostCount++);
    session.linkUp();
    const end = HOURS * 3_600_000;
    while (now < end && timers.length > 0) {
      timers.sort((a, b) => a.at - b.at);
      const t = timers.shift()!;
      now = t.at;
      t.fn();
      await Promise.resolve(); // let promise callbacks (restore) run, as they would in real time
      await Promise.resolve();
    }
    session.close();
    return lostCount;
  };
  const fixed = await run();
  const phi = await run(new PhiAccrualDetector({ intervalMs: 1000, misses: 3 }));
  return [
    { benchmark: `false lost in ${HOURS} h (simulated), RTT 20-2520 ms: fixed 1 s x 3`, measured: String(fixed), limit: '0', ratio: '-' },
    { benchmark: `false lost in ${HOURS} h (simulated), same link: phi-accrual`, measured: String(phi), limit: '0', ratio: '-' },
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) printTable('Dead-device detection', await detectionLatency());
