import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedDeviceOnPty } from '../../emulator/simulator/simulated-device-on-pty.ts';
import { DeviceLink, type DeviceLinkOptions } from '../../host/link/device-link.ts';
import type { StateChange } from '../../host/session/device-session.ts';
import { startMiddleboxRelay, type MiddleboxRelay } from '../support/middlebox-relay.ts';
import { toolAvailable } from '../support/find-tool.ts';
import { createNetns, netnsAvailable, type TestNetns } from '../support/netns.ts';
import { startSer2net, type RunningSer2net } from '../support/ser2net.ts';
import { waitFor } from '../support/wait-for.ts';

/**
 * ser2net (Debian's) in front of a board on a pty, and between tether and ser2net a path that
 * misbehaves: a relay that silently forgets idle connections, a relay that blackholes for a
 * while, a network namespace whose packets nftables drops. The board must be `ready` again
 * within one ping interval plus the bound after the path works again, never stuck `lost`.
 *
 * The blackhole lasts BRIDGE_BLACKHOLE_SEC seconds (6 here; `npm run bench` runs 60 s).
 */
const BLACKHOLE_MS = Number(process.env.BRIDGE_BLACKHOLE_SEC ?? 6) * 1000;
/** The issue's outage through the kernel (conntrack, TCP retransmission backoff): 60 s, as reported. */
const KERNEL_BLACKHOLE_MS = Number(process.env.BRIDGE_KERNEL_BLACKHOLE_SEC ?? 60) * 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A protocol-level board behind a pty, as a USB serial board looks to ser2net. */
async function boardOnPty(): Promise<string> {
  const board = await SimulatedDeviceOnPty.start();
  cleanups.push(() => board.close());
  return board.path;
}

async function ser2net(options: Parameters<typeof startSer2net>[0]): Promise<RunningSer2net> {
  const s = await startSer2net(options);
  cleanups.push(() => s.stop());
  return s;
}

async function relay(options: Parameters<typeof startMiddleboxRelay>[0]): Promise<MiddleboxRelay> {
  const r = await startMiddleboxRelay(options);
  cleanups.push(() => r.close());
  return r;
}

function link(options: DeviceLinkOptions) {
  const l = new DeviceLink(options);
  const started = Date.now();
  const changes: Array<StateChange & { t: number }> = [];
  const downs: string[] = [];
  l.on('state', (c) => changes.push({ ...c, t: Date.now() - started }));
  l.on('down', (reason) => downs.push(reason));
  cleanups.push(() => l.close());
  l.start();
  return { link: l, changes, downs };
}

/** For every `lost`, how long until the next `ready` (Infinity if none). */
function healTimes(changes: Array<StateChange & { t: number }>): number[] {
  const out: number[] = [];
  changes.forEach((c, i) => {
    if (c.to !== 'lost') return;
    const ready = changes.slice(i + 1).find((x) => x.to === 'ready');
    out.push(ready ? ready.t - c.t : Infinity);
  });
  return out;
}

describe.runIf(toolAvailable('ser2net', 'ser2net'))('a tcp:// bridge through ser2net heals when the path comes back', () => {
  it('a path that forgets idle connections (1 s) under 2 s pings: lost, then a fresh connection is ready again within one interval plus the bound, every time; without reopening it stays lost', async () => {
    const pty = await boardOnPty();
    const bridge = await ser2net({ device: pty });
    const forgetting = await relay({ targetPort: bridge.port, forgetIdleMs: 1000 });
    const intervalMs = 2000;
    const misses = 2;
    const boundMs = intervalMs * misses;

    // Without the fix (reopenOnLost: false), as the issue saw it: lost for good.
    const stuck = link({ target: `tcp://127.0.0.1:${forgetting.port}`, session: { pingIntervalMs: intervalMs, misses }, reopenOnLost: false });
    await stuck.link.ready(5000);
    await sleep(boundMs + intervalMs + 3000);
    expect(stuck.link.state).toBe('lost');
    expect(healTimes(stuck.changes)).toEqual([Infinity]);
    await stuck.link.close();

    const healing = link({ target: `tcp://127.0.0.1:${forgetting.port}`, session: { pingIntervalMs: intervalMs, misses } });
    await healing.link.ready(5000);
    await sleep(12_000);
    const heals = healTimes(healing.changes);
    console.log(`forgetting path: ${heals.length} cuts in 12 s, ready again after ${heals.map((ms) => `${ms} ms`).join(', ')} (limit ${intervalMs + boundMs} ms); relay: ${forgetting.accepted} connections, ${forgetting.forgotten} forgotten`);
    expect(heals.length).toBeGreaterThanOrEqual(2);
    // The last cut may still be healing when the test looks.
    const finished = heals.filter((ms) => ms !== Infinity);
    expect(finished.length).toBeGreaterThanOrEqual(heals.length - 1);
    for (const ms of finished) expect(ms).toBeLessThanOrEqual(intervalMs + boundMs);
    expect(healing.downs.some((r) => r.includes('reopening: board lost with the connection open'))).toBe(true);
  });

  it(`a relay that blackholes the path for ${BLACKHOLE_MS / 1000} s: lost within the bound, ready again within one interval plus the bound after it forwards again`, async () => {
    const pty = await boardOnPty();
    const bridge = await ser2net({ device: pty });
    const path = await relay({ targetPort: bridge.port });
    const intervalMs = 1000;
    const misses = 3;
    const boundMs = intervalMs * misses;
    const l = link({ target: `tcp://127.0.0.1:${path.port}`, session: { pingIntervalMs: intervalMs, misses } });
    await l.link.ready(5000);
    await sleep(1500);
    const cutAt = Date.now();
    path.blackhole(true);
    await l.link.nextState('lost', boundMs + intervalMs + 1000);
    const lostAfter = Date.now() - cutAt;
    await sleep(Math.max(0, BLACKHOLE_MS - (Date.now() - cutAt)));
    expect(l.link.state).not.toBe('ready');
    const backAt = Date.now();
    path.blackhole(false);
    await l.link.ready(intervalMs + boundMs + 2000);
    const healedAfter = Date.now() - backAt;
    console.log(`relay blackhole ${BLACKHOLE_MS} ms: lost ${lostAfter} ms after the cut; ready ${healedAfter} ms after the path returned (limit ${intervalMs + boundMs} ms); ${path.accepted} connections`);
    expect(healedAfter).toBeLessThanOrEqual(intervalMs + boundMs);
  });

  it.skipIf(!netnsAvailable())(
    `nftables drops every packet to the bridge's namespace for ${KERNEL_BLACKHOLE_MS / 1000} s: ready again within one interval plus the bound after the path returns`,
    async () => {
      const pty = await boardOnPty();
      const ns: TestNetns = createNetns();
      cleanups.push(() => ns.destroy());
      const bridge = await ser2net({ device: pty, host: ns.address, prefix: ns.prefix });
      const intervalMs = 1000;
      const misses = 3;
      const boundMs = intervalMs * misses;
      const l = link({ target: bridge.target, session: { pingIntervalMs: intervalMs, misses } });
      await l.link.ready(5000);
      await sleep(1500);
      const cutAt = Date.now();
      ns.blackhole(true);
      await l.link.nextState('lost', boundMs + intervalMs + 1000);
      const lostAfter = Date.now() - cutAt;
      await sleep(Math.max(0, KERNEL_BLACKHOLE_MS - (Date.now() - cutAt)));
      expect(l.link.state).toBe('lost');
      const backAt = Date.now();
      ns.blackhole(false);
      await l.link.ready(intervalMs + boundMs + 3000);
      const healedAfter = Date.now() - backAt;
      console.log(
        `kernel blackhole ${KERNEL_BLACKHOLE_MS} ms: lost ${lostAfter} ms after the cut; ready ${healedAfter} ms after the path returned (limit ${intervalMs + boundMs} ms); link down reasons: ${[...new Set(l.downs.map((d) => d.replace(/^tcp:\/\/\S+ /, '')))].join(' | ')}`,
      );
      expect(healedAfter).toBeLessThanOrEqual(intervalMs + boundMs);
    },
    KERNEL_BLACKHOLE_MS + 30_000,
  );

  // A board PINGed every interval has a PING unacknowledged within an interval of the cut; a
  // board sending BEATs is written to when it is lost (its HELLO_REQUEST, at the bound).
  it.skipIf(!netnsAvailable()).each([
    { beats: false, limitMs: 1000 + 3000 + 1500, why: 'the first unacknowledged PING within an interval of the cut, then the user timeout (the bound, 3 s)' },
    { beats: true, limitMs: 1000 + 3000 + 3000 + 1500, why: 'the HELLO_REQUEST once no BEAT came for the bound (3 s; the last one up to an interval before the cut), then the user timeout (3 s)' },
  ])('without reopening, TCP_USER_TIMEOUT (from the bound) still lets a blackholed socket go within about the bound, not after ~15 minutes (beats: $beats)', async ({ beats, limitMs, why }) => {
    const pty = await boardOnPty();
    const ns = createNetns();
    cleanups.push(() => ns.destroy());
    const bridge = await ser2net({ device: pty, host: ns.address, prefix: ns.prefix });
    const l = link({ target: bridge.target, session: { pingIntervalMs: 1000, misses: 3, beats }, reopenOnLost: false });
    await l.link.ready(5000);
    // The board's own heartbeat flows (beats) or it is PINGed (not).
    if (beats) await waitFor(() => l.link.session.counters.beats > 0, { timeoutMs: 3000, what: 'a BEAT from the board' });
    else expect(l.link.session.counters.beats).toBe(0);
    const cutAt = Date.now();
    ns.blackhole(true);
    const down = await new Promise<string>((resolve) => l.link.once('down', resolve));
    const after = Date.now() - cutAt;
    console.log(`kernel blackhole, no reopen, beats ${beats}: socket closed ${after} ms after the cut (limit ${limitMs}: ${why}): ${down}`);
    expect(down).toMatch(/TCP_USER_TIMEOUT/);
    expect(after).toBeLessThanOrEqual(limitMs);
    ns.blackhole(false);
    await l.link.ready(5000);
  });
});
