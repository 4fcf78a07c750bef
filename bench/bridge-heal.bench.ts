// Benchmark: time to heal a tcp:// bridge after a path outage. Debian's ser2net in front of a
// protocol-level board on a pty; between tether and ser2net a 60 s outage (BRIDGE_OUTAGE_SEC):
// (a) the kernel drops every packet (nftables in a network namespace of our own, as root),
// (b) a user-space relay stops forwarding (its kernel still ACKs). Both run at once.
// Measured: lost after the cut, ready after the path returns, against one ping interval + the bound.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PtyBridge } from '../emulator/avr/pty-bridge.ts';
import { SimulatedDevice } from '../emulator/simulator/simulated-device.ts';
import { DeviceLink } from '../host/link/device-link.ts';
import { startMiddleboxRelay } from '../test/support/middlebox-relay.ts';
import { createNetns, netnsAvailable } from '../test/support/netns.ts';
import { ser2netInstalled, startSer2net } from '../test/support/ser2net.ts';
import { sleep, withDeadline, type Row } from './support.ts';

const OUTAGE_MS = Number(process.env.BRIDGE_OUTAGE_SEC ?? 60) * 1000;
const INTERVAL_MS = 1000;
const MISSES = 3;

async function boardOnPty() {
  const dir = mkdtempSync(join(tmpdir(), 'tether-heal-bench-'));
  const device = new SimulatedDevice();
  const pty = new PtyBridge(join(dir, 'board'));
  device.on('data', (b) => pty.write(b));
  pty.on('data', (b) => device.write(b));
  await pty.open(10_000);
  device.boot();
  return {
    path: join(dir, 'board'),
    async close() {
      device.close();
      await pty.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
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

export async function bridgeHeal(): Promise<Row[]> {
  if (!ser2netInstalled()) return [{ benchmark: 'bridge heal', measured: 'skipped: ser2net is not installed', limit: '-', ratio: '-' }];
  const kinds: Array<'kernel' | 'relay'> = netnsAvailable() ? ['kernel', 'relay'] : ['relay'];
  return await Promise.all(kinds.map(outage));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { printTable } = await import('./support.ts');
  printTable('bridge heal', await bridgeHeal());
  process.exit(0);
}
