import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../support/wait-for.ts';
import { BoardOnTcp } from '../../emulator/avr/board-on-tcp.ts';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { startAedesProcess } from '../support/aedes-process.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { binaryState, FakeHomeAssistant } from '../support/home-assistant.ts';
import { startMosquitto } from '../support/mosquitto.ts';

// Home Assistant's view of the real `tether daemon` process (test/support/home-assistant.ts
// models it from its MQTT documentation: config schemas, availability_mode): a board asleep
// stays available, a daemon killed with kill -9 leaves every board unavailable through the
// brokers' Last Wills alone, and a board taken out of the config has its entities deleted
// (empty retained configs) when the daemon starts again. Two boards: the real firmware on an
// emulated Uno that sleeps (policy sleep), and a protocol-level simulated board.
// Brokers in their own processes, so they outlive the daemon: Mosquitto, and Aedes (the
// embedded broker's code).

const brokers = [
  { name: 'Mosquitto', protocolVersion: 5 as const, start: () => startMosquitto() },
  { name: 'Aedes', protocolVersion: 4 as const, start: () => startAedesProcess() },
];

describe.each(brokers)('Home Assistant and the daemon process on $name', ({ protocolVersion, start }) => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-ha-daemon-'));
  let broker: { url: string; stop(): Promise<void> };
  let uno: BoardOnTcp;
  let sim: DeviceOnTcp;
  let ha: FakeHomeAssistant;
  const daemons: DaemonProcess[] = [];

  const unoDevice = () => ({
    id: 'uno-nap',
    port: uno.url,
    keepalive: { intervalMs: 250, misses: 4, sleepGraceMs: 2000 },
    config: { watchdogMs: 2000, policy: 'sleep', sleepMs: 3000, awakeMs: 400 },
    components: [{ type: 'led', id: 'status', pin: 13 }],
  });
  const simDevice = () => ({ id: 'sim-gone', port: sim.target, keepalive: { intervalMs: 250, misses: 4 } });
  const daemon = (devices: object[]) => {
    const d = new DaemonProcess(
      {
        gateway: { id: 'gw-d', name: 'Daemon under test' },
        broker: { url: broker.url, protocolVersion, backoff: { initialMs: 50, maxMs: 500 } },
        queue: { dir: join(dir, 'queue') },
        control: { enabled: false },
        devices,
      },
      mkdtempSync(join(dir, 'run-')),
    );
    daemons.push(d);
    d.start();
    return d;
  };
  const board = (id: string) => ha.ofDevice(`tether_${id}`);
  const available = (id: string) => Object.fromEntries(board(id).map((e) => [e.config.unique_id!.replace(`tether_${id}_`, ''), e.availability.available]));
  const gatewayConnectivity = () => {
    const e = ha.byUniqueId('tether_gw-d_connectivity');
    return { available: e.availability.available, state: binaryState(e.config, e.state ?? '', 'unknown') };
  };

  beforeAll(async () => {
    broker = await start();
    uno = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    sim = await serveDeviceOverTcp();
    ha = await FakeHomeAssistant.connect(broker.url);
  }, 60_000);

  afterAll(async () => {
    for (const d of daemons) await d.kill9();
    await ha?.close();
    await sim?.close();
    await uno?.close();
    await broker?.stop();
  });

  it('a sleeping board stays available (commands are queued for it); its connectivity says on', async () => {
    const first = daemon([unoDevice(), simDevice()]);
    try {
      await eventually(
        () => {
          expect(ha.invalid).toEqual([]);
          expect(board('uno-nap')).toHaveLength(9); // LED + 8 keepalive
          expect(board('sim-gone')).toHaveLength(8);
          expect(ha.byUniqueId('tether_uno-nap_state').state).toBe('sleeping');
        },
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      expect(Object.values(available('uno-nap')).every(Boolean)).toBe(true);
      expect(Object.values(available('sim-gone')).every(Boolean)).toBe(true);
      const connectivity = ha.byUniqueId('tether_uno-nap_connectivity');
      expect(binaryState(connectivity.config, connectivity.state!, 'unknown')).toBe('on');
      expect(gatewayConnectivity()).toEqual({ available: true, state: 'on' });
      // Available through a whole sleep longer than the keepalive bound (4 x 250 ms): the board
      // wakes now and then (its awake window, a ping), so watch sleeps until one lasted 1.5 s.
      const state = () => ha.byUniqueId('tether_uno-nap_state').state;
      let longest = 0;
      const deadline = Date.now() + 20_000;
      while (longest < 1500 && Date.now() < deadline) {
        await eventually(() => expect(state()).toBe('sleeping'), { timeoutMs: 10_000, intervalMs: 10 });
        const since = Date.now();
        while (state() === 'sleeping' && Date.now() < deadline) {
          expect(available('uno-nap')).toMatchObject({ status_on: true, tether_rtt: true, connectivity: true });
          await new Promise((r) => setTimeout(r, 20));
        }
        longest = Math.max(longest, Date.now() - since);
      }
      expect(longest).toBeGreaterThanOrEqual(1500);
      // A command from Home Assistant to the sleeping board wakes it and is applied.
      await eventually(() => expect(state()).toBe('sleeping'), { timeoutMs: 10_000, intervalMs: 10 });
      await ha.command(ha.byUniqueId('tether_uno-nap_status_on'), true);
      await eventually(() => expect(uno.uno.digitalOutput(13)).toBe(true), { timeoutMs: 10_000, intervalMs: 20 });
      expect(uno.uno.stats.sleeps).toBeGreaterThanOrEqual(1);
    } catch (err) {
      console.log(first.logs.slice(-20).map((l) => JSON.stringify(l)).join('\n'));
      throw err;
    }
  });

  it('kill -9 of the daemon: the Last Wills alone make every board entity unavailable and the gateway off', async () => {
    await daemons[0]!.kill9();
    await eventually(
      () => {
        for (const id of ['uno-nap', 'sim-gone']) {
          expect({ id, available: available(id) }).toEqual({ id, available: Object.fromEntries(Object.keys(available(id)).map((k) => [k, false])) });
        }
        expect(gatewayConnectivity()).toEqual({ available: true, state: 'off' });
        // The board session's own will (the broker handles each dead socket on its own, so it may
        // come a moment after the gateway's, which already makes the entities unavailable).
        expect(ha.byUniqueId('tether_uno-nap_state').state).toBe('lost');
      },
      { timeoutMs: 10_000, intervalMs: 20 },
    );
  });

  it('a board removed from the config has its configs deleted on the next start; the others come back', async () => {
    const simTopics = board('sim-gone').map((e) => e.topic);
    expect(simTopics).toHaveLength(8);
    const second = daemon([unoDevice()]); // sim-gone taken out of the config
    try {
      await eventually(
        () => {
          expect(board('sim-gone')).toEqual([]);
          expect(ha.removed).toEqual(expect.arrayContaining(simTopics));
          expect(Object.values(available('uno-nap')).every(Boolean)).toBe(true);
          expect(gatewayConnectivity()).toEqual({ available: true, state: 'on' });
        },
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      // Gone from the broker too: a Home Assistant starting now finds only the configured board.
      const fresh = await FakeHomeAssistant.connect(broker.url);
      try {
        await eventually(() => expect(fresh.ofDevice('tether_uno-nap')).toHaveLength(9), { timeoutMs: 10_000, intervalMs: 50 });
        await new Promise((r) => setTimeout(r, 300));
        expect(fresh.ofDevice('tether_sim-gone')).toEqual([]);
        expect(fresh.invalid).toEqual([]);
      } finally {
        await fresh.close();
      }
      expect(second.logs.filter((l) => /removed a Home Assistant entity no longer configured/.test(l.msg ?? ''))).toHaveLength(8);
    } catch (err) {
      console.log(second.logs.slice(-20).map((l) => JSON.stringify(l)).join('\n'));
      throw err;
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});
