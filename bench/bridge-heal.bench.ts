// Benchmark: time to heal a tcp:// bridge after a path outage. Debian's ser2net in front of a
// protocol-level board on a pty; between tether and ser2net a 60 s outage (BRIDGE_OUTAGE_SEC):
// (a) the kernel drops every packet (nftables in a network namespace of our own, as root),
// (b) a user-space relay stops forwarding (its kernel still ACKs). Both run at once.
// Measured: lost after the cut, ready after the path returns, against one ping interval + the bound.
// Then: a path that forgets idle connections under a long ping interval, learning off vs on
// (time to learn the path's timeout, cuts per hour; learnBridgePath).
import { SimulatedDeviceOnPty } from '../emulator/simulator/simulated-device-on-pty.ts';
import { DeviceLink } from '../host/link/device-link.ts';
import { startMiddleboxRelay } from '../test/support/middlebox-relay.ts';
import { createNetns, netnsAvailable } from '../test/support/netns.ts';
import { ser2netInstalled, startSer2net } from '../test/support/ser2net.ts';
import { sleep, withDeadline, type Row } from './support.ts';

const OUTAGE_MS = Number(process.env.BRIDGE_OUTAGE_SEC ?? 60) * 1000;
const INTERVAL_MS = 1000;
const MISSES = 3;

function boardOnPty() {
  return SimulatedDeviceOnPty.start({}, 10_000);
}

async function outage(kind: 'kernel' | 'relay'): Promise<Row> {
  const board = await boardOnPty();
  const ns = kind === 'kernel' ? createNetns() : null;
  const bridge = await startSer2net({ device: board.path, ...(ns ? { host: ns.address, prefix: ns.prefix } : {}) });
  const relay = kind === 'relay' ? await startMiddleboxRelay({ targetPort: bridge.port }) : null;
  const target = relay ? `tcp://127.0.0.1:${relay.port}` : bridge.target;
  const link = new DeviceLink({ target, session: { pingIntervalMs: INTERVAL_MS, misses: MISSES } });
  let connects = 0;
  link.on('up', () => connects++);
  try {
    link.start();
    await link.ready(10_000);
    await sleep(2000);
    const cut = performance.now();
    if (ns) ns.blackhole(true);
    else relay!.blackhole(true);
    await link.nextState('lost', 20_000);
    const lostAfter = performance.now() - cut;
    await sleep(OUTAGE_MS - (performance.now() - cut));
    const back = performance.now();
    const ready = link.nextState('ready', 120_000);
    if (ns) ns.blackhole(false);
    else relay!.blackhole(false);
    await ready;
    const healed = performance.now() - back;
    const limit = INTERVAL_MS + INTERVAL_MS * MISSES;
    return {
      benchmark: `bridge heal: ${OUTAGE_MS / 1000} s ${kind === 'kernel' ? 'kernel blackhole (nftables drop, netns)' : 'relay blackhole (user space)'}, ser2net, 1 s x 3`,
      measured: `lost ${(lostAfter / 1000).toFixed(1)} s after the cut; ready ${(healed / 1000).toFixed(2)} s after the path returned (${connects} connects)`,
      limit: `${limit / 1000} s (interval + bound); before: ${kind === 'kernel' ? '48.6 s (issue 12)' : 'stuck lost'}`,
      ratio: `${(healed / limit).toFixed(2)}x of the limit`,
    };
  } finally {
    await withDeadline(link.close(), 10_000, 'the DeviceLink to close');
    await withDeadline(Promise.resolve(relay?.close()), 10_000, 'the relay to close');
    await withDeadline(bridge.stop(), 10_000, 'ser2net to stop');
    ns?.destroy();
    await withDeadline(board.close(), 10_000, 'the pty board to close');
  }
}

/**
 * A bridge path that forgets idle connections (a relay, FORGET_MS) and a long device ping
 * interval (LEARN_PING_MS, battery or bandwidth reasons), for BRIDGE_LEARN_WINDOW_SEC: cuts per
 * hour with the keep-traffic fixed at the ping interval (learning off: as before) against
 * learned (cuts while learning, time to learn, then cuts per hour after it). Both run at once,
 * each on its own board, ser2net and relay.
 */
const FORGET_MS = 6000;
const LEARN_PING_MS = 20_000;
const LEARN_WINDOW_MS = Number(process.env.BRIDGE_LEARN_WINDOW_SEC ?? 240) * 1000;

async function idlePath(learn: boolean): Promise<{ cuts: number; learnedAtMs: number | null; cutsWhileLearning: number; intervalMs: number; timeoutMs: number | null }> {
  const board = await boardOnPty();
  const bridge = await startSer2net({ device: board.path });
  const relay = await startMiddleboxRelay({ targetPort: bridge.port, forgetIdleMs: FORGET_MS });
  const link = new DeviceLink({ target: `tcp://127.0.0.1:${relay.port}`, session: { pingIntervalMs: LEARN_PING_MS, misses: 3 }, keepTraffic: { learn } });
  let cuts = 0;
  let cutsWhileLearning = 0;
  let learnedAtMs: number | null = null;
  const started = performance.now();
  link.on('state', (c) => {
    if (c.to === 'lost') cuts++;
  });
  try {
    link.start();
    await link.ready(10_000);
    const poll = setInterval(() => {
      const k = link.keepTraffic!.stats;
      if (learnedAtMs === null && k.learned && k.timeoutMs !== null) {
        learnedAtMs = performance.now() - started;
        cutsWhileLearning = cuts;
      }
    }, 100);
    await sleep(LEARN_WINDOW_MS);
    clearInterval(poll);
    const k = link.keepTraffic!.stats;
    return { cuts, learnedAtMs, cutsWhileLearning, intervalMs: k.intervalMs, timeoutMs: k.timeoutMs };
  } finally {
    await withDeadline(link.close(), 10_000, 'the DeviceLink to close');
    await withDeadline(relay.close(), 10_000, 'the relay to close');
    await withDeadline(bridge.stop(), 10_000, 'ser2net to stop');
    await withDeadline(board.close(), 10_000, 'the pty board to close');
  }
}

export async function learnBridgePath(): Promise<Row[]> {
  const [fixed, learned] = await Promise.all([idlePath(false), idlePath(true)]);
  const perHour = (cuts: number, ms: number) => (ms > 0 ? (cuts * 3_600_000) / ms : NaN);
  const fixedPerHour = perHour(fixed.cuts, LEARN_WINDOW_MS);
  const afterMs = learned.learnedAtMs === null ? 0 : LEARN_WINDOW_MS - learned.learnedAtMs;
  const learnedPerHour = perHour(learned.cuts - learned.cutsWhileLearning, afterMs);
  const name = `bridge path forgetting after ${FORGET_MS / 1000} s idle, pings every ${LEARN_PING_MS / 1000} s, ser2net, ${LEARN_WINDOW_MS / 1000} s`;
  return [
    {
      benchmark: `${name}: time to learn the path's timeout`,
      measured:
        learned.learnedAtMs === null
          ? `not learned within ${LEARN_WINDOW_MS / 1000} s`
          : `${(learned.learnedAtMs / 1000).toFixed(1)} s (${learned.cutsWhileLearning} cuts); keep-traffic every ${(learned.intervalMs / 1000).toFixed(1)} s, timeout at most ${((learned.timeoutMs ?? 0) / 1000).toFixed(1)} s`,
      limit: 'at most 2 cuts while learning (issue 12)',
      ratio: '-',
    },
    {
      benchmark: `${name}: cuts per hour, fixed vs learned`,
      measured: `learned: ${learned.cuts - learned.cutsWhileLearning} cuts in ${(afterMs / 1000).toFixed(0)} s after learning (${learnedPerHour.toFixed(0)}/h)`,
      limit: `fixed at the ping interval: ${fixed.cuts} cuts in ${LEARN_WINDOW_MS / 1000} s (${fixedPerHour.toFixed(0)}/h)`,
      ratio: fixedPerHour > 0 ? `${(learnedPerHour / fixedPerHour).toFixed(2)}x` : '-',
    },
  ];
}

export async function bridgeHeal(): Promise<Row[]> {
  if (!ser2netInstalled()) return [{ benchmark: 'bridge heal', measured: 'skipped: ser2net is not installed', limit: '-', ratio: '-' }];
  const kinds: Array<'kernel' | 'relay'> = netnsAvailable() ? ['kernel', 'relay'] : ['relay'];
  const heal = await Promise.all(kinds.map(outage));
  return [...heal, ...(await learnBridgePath())];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { printTable } = await import('./support.ts');
  printTable('bridge heal', await bridgeHeal());
  process.exit(0);
}
