import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedDeviceOnPty } from '../../emulator/simulator/simulated-device-on-pty.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { toolAvailable } from '../support/find-tool.ts';
import { startMiddleboxRelay } from '../support/middlebox-relay.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { MqttWatcher } from '../support/mqtt-watcher.ts';
import { startSer2net } from '../support/ser2net.ts';
import { waitFor } from '../support/wait-for.ts';

/**
 * Issue 12: a relay outage in front of a tcp:// board. While the path is out the link is
 * closed and reopened with backoff; the relay accepts every new connection (as a bridge or a
 * load balancer does whatever is behind it) and carries nothing. A subscriber to the board's
 * Homie `$state` must see `lost` once, then `ready` when the board is truly back, not
 * `lost, init, lost, init, ...` for every reopen attempt.
 *
 * Real parts: the daemon, Mosquitto, Debian's ser2net in front of a protocol-level board on a
 * pty, and the user-space relay of test/support (its blackhole drops every byte both ways).
 */
const STATE = 'homie/5/b1/$state';
const OUTAGE_MS = 12_000;

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe.runIf(toolAvailable('ser2net', 'ser2net') && toolAvailable('mosquitto', 'mosquitto'))('Homie $state of a tcp:// board during a path outage', () => {
  it('lost once, then ready: reopen attempts that nothing answers publish no init', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-flap-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const board = await SimulatedDeviceOnPty.start();
    cleanups.push(() => board.close());
    const bridge = await startSer2net({ device: board.path });
    cleanups.push(() => bridge.stop());
    const relay = await startMiddleboxRelay({ targetPort: bridge.port });
    cleanups.push(() => relay.close());
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const watcher = await MqttWatcher.connect(broker.url, STATE);
    cleanups.push(() => watcher.close());
    const facts = await MqttWatcher.connect(broker.url, 'homie/5/b1/tether/+');
    cleanups.push(() => facts.close());

    const daemon = new DaemonProcess({
      gateway: { id: 'gw' },
      broker: { url: broker.url, keepaliveTraffic: { learn: false } },
      queue: { dir: path.join(dir, 'queue'), fsync: 'never' },
      log: { level: 'debug' },
      control: { enabled: false },
      homeassistant: { enabled: false },
      // Short handshake time: several reopen attempts fit in the outage.
      devices: [{ id: 'b1', port: `tcp://127.0.0.1:${relay.port}`, keepalive: { intervalMs: 500, misses: 3, handshakeTimeoutMs: 1500 } }],
    });
    cleanups.push(() => daemon.stop());
    daemon.start();
    await watcher.waitFor(STATE, 'ready', 30_000);
    const mark = watcher.received.length;

    relay.blackhole(true);
    await watcher.waitFor(STATE, 'lost', 15_000, mark);
    const acceptedAtLoss = relay.accepted;
    // The outage lasts until several reopen attempts were made (each one accepted by the relay).
    await waitFor(() => relay.accepted >= acceptedAtLoss + 3, { timeoutMs: OUTAGE_MS * 2, what: 'three reopen attempts through the relay' });
    relay.blackhole(false);
    await watcher.waitFor(STATE, 'ready', 20_000, mark);

    const history = watcher.received.slice(mark).map((r) => r.payload);
    console.log(`$state during the outage: ${history.join(' -> ')}; relay accepted ${relay.accepted - acceptedAtLoss} reopen attempts`);
    expect(relay.accepted - acceptedAtLoss).toBeGreaterThanOrEqual(3);
    expect(history[0]).toBe('lost');
    expect(history.at(-1)).toBe('ready');
    // lost once; at most one init, and only right before ready (the board answered).
    expect(history.filter((s) => s === 'lost')).toHaveLength(1);
    expect(['lost,ready', 'lost,init,ready']).toContain(history.join(','));
    // The bridge path's facts on the board's tether node: the outage counted as one half-open cut
    // (pings at 0.5 s idle: under the 2 s floor, nothing to learn, so no keep-traffic beyond the pings).
    await facts.waitFor('homie/5/b1/tether/drops-half-open', '1', 15_000);
    expect(facts.last('homie/5/b1/tether/keep-interval')).toBe('0.5');
    expect(facts.last('homie/5/b1/tether/idle-timeout')).toBe('0.0');
    expect(facts.last('homie/5/b1/tether/drops-closed')).toBe('0');
  });
});
