// Shared-session mode with more boards than EventEmitter's default limit of listeners (10):
// one broker session for all of them, each board hearing only its own topics through the
// gateway's SharedSessionDispatcher. Real Mosquitto, the real daemon, simulated boards behind TCP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { MqttWatcher } from '../support/mqtt-watcher.ts';
import { waitFor } from '../support/wait-for.ts';

const BOARDS = 14;

describe('shared-session mode with a fleet', () => {
  let mosquitto: RunningMosquitto;
  const sims: DeviceOnTcp[] = [];

  beforeAll(async () => {
    mosquitto = await startMosquitto();
    for (let i = 0; i < BOARDS; i++) sims.push(await serveDeviceOverTcp({ bootId: i + 1 }));
  });

  afterAll(async () => {
    for (const s of sims) await s.close();
    await mosquitto?.stop();
  });

  it(`${BOARDS} boards on one session: a /set reaches only its board, and no MaxListenersExceededWarning`, async () => {
    const ids = sims.map((_, i) => `fleet-${i}`);
    const watcher = await MqttWatcher.connect(mosquitto.url, 'homie/5/#', { protocolVersion: 5 });
    const daemon = new DaemonProcess({
      gateway: { id: 'gw-fleet' },
      broker: { url: mosquitto.url, sharedSession: true },
      queue: { dir: 'queue' },
      devices: sims.map((s, i) => ({ id: ids[i], port: s.target, keepalive: { intervalMs: 500 }, components: [{ type: 'led', id: 'status', pin: 13 }] })),
    });
    daemon.start();
    try {
      await waitFor(() => ids.every((id) => watcher.last(`homie/5/${id}/$state`) === 'ready'), {
        what: `all ${BOARDS} boards ready`,
        timeoutMs: 60_000,
        intervalMs: 100,
        detail: () => ids.map((id) => `${id}: ${watcher.last(`homie/5/${id}/$state`)}`).join(', '),
      });
      const connects = daemon.logs.filter((l) => /connected to the MQTT broker/.test(l.msg ?? ''));
      expect(connects).toHaveLength(1); // one connection, the gateway's
      const mark = watcher.received.length;
      await watcher.publish('homie/5/fleet-9/status/on/set', 'true');
      await watcher.waitFor('homie/5/fleet-9/status/on', 'true', 15_000, mark);
      // The others were not told anything: no board but fleet-9 reports its LED on.
      for (const id of ids.filter((x) => x !== 'fleet-9')) expect(watcher.last(`homie/5/${id}/status/on`), id).not.toBe('true');
      expect(daemon.stderr, daemon.stderr).not.toMatch(/MaxListenersExceededWarning/);
      expect(daemon.logs.filter((l) => /rejected|unknown/i.test(l.msg ?? '') && /set/.test(l.msg ?? ''))).toEqual([]);
      const code = await daemon.stop();
      expect(code).toBe(0);
      expect(daemon.stderr).not.toMatch(/MaxListenersExceededWarning/);
    } finally {
      await daemon.kill9();
      await watcher.close();
    }
  });
});
