import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { MqttWatcher } from '../support/mqtt-watcher.ts';

// Issue 12 point 3, "quiet when idle", end to end: the real daemon with its default config (but
// for the broker URL and the queue dir), an idle protocol-level board on a tcp:// bridge, real
// Mosquitto, and a subscriber on homie/5/# counting what the board and the gateway publish
// once both are ready. Before, the daemon published every keepalive fact (QoS 1) at every 5 s
// check: with that put back for a trial, this board (a tcp:// one: 9 facts) sent 54 messages in
// the window and the test failed. Now facts go out on meaningful change or every
// homie.factsRefreshSec (300 s), so an idle board publishes next to nothing (0 here).

const WINDOW_MS = 30_000;
/** Allowed in the window per device: an RTT median that moved by > 50 % and > 10 ms on a loaded machine, twice at most. */
const MAX_PER_DEVICE = 2;

describe('quiet when idle', () => {
  let broker: RunningMosquitto;
  let board: DeviceOnTcp;
  const dir = mkdtempSync(join(tmpdir(), 'tether-quiet-'));

  beforeAll(async () => {
    broker = await startMosquitto();
    board = await serveDeviceOverTcp();
  });
  afterAll(async () => {
    await board?.close();
    await broker?.stop();
  });

  it(`an idle board and its gateway publish at most ${MAX_PER_DEVICE} messages each in ${WINDOW_MS / 1000} s once ready (default config)`, async () => {
    const watcher = await MqttWatcher.connect(broker.url, 'homie/5/#');
    const daemon = new DaemonProcess({
      gateway: { id: 'gw' },
      broker: { url: broker.url },
      queue: { dir: join(dir, 'queue') },
      devices: [{ id: 'idle-board', port: board.target }],
    });
    daemon.start();
    try {
      await watcher.waitFor('homie/5/idle-board/$state', 'ready', 20_000);
      await watcher.waitFor('homie/5/gw/$state', 'ready', 20_000);
      // The facts published with the state change (rtt, last-seen, boot-id, ...) are the burst
      // of becoming ready, not idle traffic: the window starts once the board's RTT has been said.
      await watcher.waitFor('homie/5/idle-board/tether/rtt', () => true, 15_000);
      const start = performance.now() + 2000;
      // A fixed wait: what is measured is how much arrives in a stretch of real time.
      await new Promise((r) => setTimeout(r, WINDOW_MS + 2000));
      const inWindow = watcher.received.filter((r) => r.at >= start && r.at < start + WINDOW_MS);
      const of = (device: string) => inWindow.filter((r) => r.topic.startsWith(`homie/5/${device}/`)).map((r) => `${r.topic}=${r.payload}`);
      expect(of('idle-board').length, of('idle-board').join('\n')).toBeLessThanOrEqual(MAX_PER_DEVICE);
      expect(of('gw').length, of('gw').join('\n')).toBeLessThanOrEqual(MAX_PER_DEVICE);
      // Still alive and said so (the quiet is not a dead board): ready throughout.
      expect(watcher.last('homie/5/idle-board/$state')).toBe('ready');
      expect(inWindow.filter((r) => r.topic.endsWith('/$state'))).toEqual([]);
    } finally {
      expect(await daemon.stop()).toBe(0);
      await watcher.close();
    }
  }, 90_000);
});
