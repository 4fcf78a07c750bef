import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, waitFor } from '../support/wait-for.ts';
import { BoardOnTcp } from '../../emulator/avr/board-on-tcp.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { activeResources, leakedSince } from '../support/handles.ts';
import { binaryState, FakeHomeAssistant, type ModelEntity } from '../support/home-assistant.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';

// Home Assistant discovery end to end: the daemon's Gateway in this process, the real firmware
// on an emulated Uno (relay, LED, button, sensor through Johnny-Five), a real broker (Mosquitto,
// and the embedded one the daemon starts itself), and a model of Home Assistant
// (test/support/home-assistant.ts: the documented config schemas and availability rule; Home
// Assistant itself cannot run here).

const brokers = [
  { name: 'Mosquitto', start: () => startMosquitto() },
  { name: 'the embedded broker', start: async () => null },
];

describe.each(brokers)('Home Assistant discovery on $name', ({ start }) => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-ha-'));
  const log = new RecordingLogger();
  let baseline: Record<string, number>;
  let broker: RunningMosquitto | null = null;
  let board: BoardOnTcp;
  let gateway: Gateway;
  let ha: FakeHomeAssistant;
  const uid = (entity: string) => ha.byUniqueId(`tether_uno-ha_${entity}`);

  beforeAll(async () => {
    baseline = activeResources();
    broker = await start();
    board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    const config = validateConfig({
      gateway: { id: 'gw-ha', name: 'HA gateway' },
      broker: broker ? { url: broker.url, backoff: { initialMs: 50, maxMs: 200 } } : { embeddedPort: 0 },
      queue: { dir: join(dir, 'queue') },
      control: { enabled: false },
      devices: [
        {
          id: 'uno-ha',
          name: 'Bench Uno',
          port: board.url,
          keepalive: { intervalMs: 250, misses: 4 },
          components: [
            { type: 'relay', id: 'pump', pin: 8, name: 'Pump' },
            { type: 'led', id: 'status', pin: 13 },
            { type: 'button', id: 'door', pin: 2 },
            { type: 'sensor', id: 'light', pin: 'A0', freq: 200, threshold: 20 },
          ],
        },
      ],
    });
    gateway = await Gateway.start(config, log, { env: {} });
    // Home Assistant comes once the board is up and its state is on the broker: Aedes may hand a
    // client that subscribes at the very moment a retained value changes the older value after
    // the newer live one (it reads its retained store before the newer one lands), which would
    // leave this model (and a real Home Assistant) with a stale `$state`. Mosquitto does not.
    const device = gateway.devices[0]!;
    await eventually(() => expect(device.link.state === 'ready' && device.outbox.size === 0).toBe(true), { timeoutMs: 30_000, intervalMs: 50 });
    ha = await FakeHomeAssistant.connect(gateway.brokerUrl);
  }, 60_000);

  afterAll(async () => {
    await ha?.close();
    await gateway?.stop();
    await board?.close();
    await broker?.stop();
  });

  it('publishes a valid config for every component and keepalive entity; the board device carries its firmware from HELLO', async () => {
    await eventually(
      () => {
        expect(ha.invalid).toEqual([]);
        expect(ha.entities.size).toBe(13); // the gateway's one + 4 components + 8 keepalive
        expect(uid('pump_closed').config.device?.sw_version).toMatch(/^tether \d+\.\d+$/);
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    const kinds = [...ha.entities.values()].map((e) => `${e.component}:${e.config.unique_id}`).sort();
    expect(kinds).toEqual(
      [
        'binary_sensor:tether_gw-ha_connectivity',
        'switch:tether_uno-ha_pump_closed',
        'light:tether_uno-ha_status_on',
        'binary_sensor:tether_uno-ha_door_pressed',
        'sensor:tether_uno-ha_light_value',
        'binary_sensor:tether_uno-ha_connectivity',
        'sensor:tether_uno-ha_state',
        'sensor:tether_uno-ha_tether_rtt',
        'sensor:tether_uno-ha_tether_last-seen',
        'sensor:tether_uno-ha_tether_reboots',
        'sensor:tether_uno-ha_tether_reset-cause',
        'sensor:tether_uno-ha_tether_asleep-time',
        'sensor:tether_uno-ha_tether_boot-id',
      ]
        .concat()
        .sort(),
    );
    expect(ha.ofDevice('tether_uno-ha')).toHaveLength(12);
    expect(uid('pump_closed').config.device).toMatchObject({ name: 'Bench Uno', manufacturer: 'Arduino', via_device: 'tether_gw-ha' });
    expect(ha.byUniqueId('tether_gw-ha_connectivity').config.device).toMatchObject({ identifiers: ['tether_gw-ha'], name: 'HA gateway' });
    // Ready: every entity available, connectivity on, values from the retained Homie topics.
    await eventually(
      () => {
        for (const e of ha.entities.values()) expect({ id: e.config.unique_id, available: e.availability.available }).toMatchObject({ available: true });
        expect(binaryState(uid('connectivity').config, uid('connectivity').state ?? '', 'unknown')).toBe('on');
        expect(uid('pump_closed').state).toBe('false');
        expect(uid('tether_rtt').state).toMatch(/^\d+\.\d$/);
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
  });

  it('commands from Home Assistant go through the /set validation: ON/OFF as configured move the relay, a bad payload changes nothing', async () => {
    const uno = board.uno;
    const device = gateway.devices[0]!;
    await waitFor(() => device.board?.isReady === true, {
      what: "Johnny-Five's board ready",
      timeoutMs: 20_000,
      detail: () => `link ${device.link.state}, hold ${device.holdMode}, io ready ${String(device.tetherIO?.isReady)}; log: ${log.records.slice(-12).map((r) => r.msg).join(' | ')}`,
    });
    const pump = uid('pump_closed');
    // A pin's wait says, if it times out, where the command stopped (seen three times in CI,
    // under load: a command's pin did not move; not reproduced in 100 runs alone or under load;
    // the third time firmata.js held pin 13 high, port 1 = 33, and the MCU's pin was low).
    const pinIs = (pin: number, high: boolean) =>
      waitFor(() => uno.digitalOutput(pin) === high, {
        what: `pin ${pin} ${high ? 'high' : 'low'}`,
        timeoutMs: 10_000,
        intervalMs: 20,
        detail: () => {
          const io = device.tetherIO as unknown as { pins?: Array<{ mode?: number; value?: number }>; ports?: number[] } | null;
          const firmata = [8, 13].map((p) => `pin ${p}: mode ${String(io?.pins?.[p]?.mode)} value ${String(io?.pins?.[p]?.value)}`).join(', ');
          const lines = log.records.filter((r) => /set|replay|state|lost|ready|reboot|wedge|sleep|write/i.test(r.msg ?? '')).slice(-25);
          return [
            `board pins 8 ${String(uno.digitalOutput(8))}, 13 ${String(uno.digitalOutput(13))}; link ${device.link.state}; hold ${device.holdMode}`,
            // Whether the MCU slept, reset or could not take bytes from the host meanwhile.
            `MCU: ${JSON.stringify(uno.stats)}`,
            `firmata.js ${firmata}, port 1 ${String(io?.ports?.[1])}; sets applied ${device.counters.setsApplied}, rejected ${device.counters.setsRejected}`,
            `commands seen by Home Assistant's model: ${ha.history.filter((m) => m.topic.endsWith('/set')).map((m) => `${m.topic} ${m.payload}`).join('; ')}`,
            ...lines.map((r) => `${r.level} ${r.msg}`),
          ].join('\n');
        },
      });
    await ha.command(pump, true);
    await pinIs(8, true);
    await eventually(() => expect(uid('pump_closed').state).toBe('true'), { timeoutMs: 10_000, intervalMs: 20 });

    const rejected = device.counters.setsRejected;
    await ha.command(pump, 'ON'); // Home Assistant's default payload_on: not what the config says, not a Homie boolean
    await eventually(() => expect(device.counters.setsRejected).toBe(rejected + 1), { timeoutMs: 10_000, intervalMs: 20 });
    expect(log.records.some((r) => r.level === 'warn' && /rejected \/set: expected true or false/.test(r.msg ?? ''))).toBe(true);
    expect(uno.digitalOutput(8)).toBe(true);

    await ha.command(uid('status_on'), true);
    await pinIs(13, true);
    await ha.command(pump, false);
    await pinIs(8, false);
    // Home Assistant publishes commands as configured: QoS 1, not retained (a retained /set is
    // ignored on resubscribe: test/integration/retained-set.test.ts, the same topics and code).
    expect(pump.config).toMatchObject({ qos: 1, retain: false });
  });

  it("publishing `online` on homeassistant/status (Home Assistant's birth message) makes the daemon publish discovery again", async () => {
    const before = new Map(ha.configMessages);
    expect(before.size).toBe(13);
    await ha.birth();
    await eventually(
      () => {
        for (const [topic, count] of before) expect({ topic, count: ha.configMessages.get(topic) }).toEqual({ topic, count: count + 1 });
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    expect(ha.invalid).toEqual([]);
    expect(log.records.some((r) => /Home Assistant is online: sending discovery again/.test(r.msg ?? ''))).toBe(true);
  });

  it("the daemon's sessions do not hear their own configs back (MQTT 5 No Local; on 3.1.1 the board's session does and ignores them), yet a config someone else empties is published again", async () => {
    const device = gateway.devices[0]!;
    const heard: string[] = [];
    const onGateway = (topic: string) => heard.push(`gateway ${topic}`);
    const onBoard = (_d: unknown, topic: string) => heard.push(`board ${topic}`);
    gateway.mqtt.on('message', onGateway);
    gateway.events.on('mqttMessage', onBoard);
    try {
      const before = new Map(ha.configMessages);
      await ha.birth();
      await eventually(() => expect([...before].every(([topic, count]) => ha.configMessages.get(topic)! > count)).toBe(true), { timeoutMs: 10_000, intervalMs: 50 });
      // Another QoS 1 round trip on each session: an echo of the configs would have come first.
      await gateway.mqtt.publish('tether-test/ha-echo', 'x', { qos: 1, retain: false });
      await device.mqtt.publish('tether-test/ha-echo', 'x', { qos: 1, retain: false });
      const configs = heard.filter((h) => h.includes(`${ha.prefix}/`) && h.endsWith('/config'));
      if (device.mqtt.protocolVersion === 5) expect(configs).toEqual([]);
      else expect(configs.length).toBeGreaterThan(0);
      expect(configs.filter((h) => h.startsWith('gateway ') && h.includes('/uno-ha/'))).toEqual([]);

      // Emptied by someone else (a gateway that had the board once deletes its configs as stale):
      const emptied = uid('tether_rtt').topic;
      const removedBefore = ha.removed.length;
      await ha.client.publishAsync(emptied, '', { qos: 1, retain: true });
      await eventually(() => expect(ha.removed.length > removedBefore && ha.entities.has(emptied)).toBe(true), { timeoutMs: 10_000, intervalMs: 50 });
      expect(log.records.some((r) => /was deleted by someone else: publishing it again/.test(r.msg ?? ''))).toBe(true);
    } finally {
      gateway.mqtt.off('message', onGateway);
      gateway.events.off('mqttMessage', onBoard);
    }
  });

  it('a board going lost makes its entities unavailable (its connectivity stays available and says off); its watchdog reset brings them back', async () => {
    const entities = () => ({
      pump: uid('pump_closed').availability.available,
      rtt: uid('tether_rtt').availability.available,
      connectivity: uid('connectivity').availability.available,
      connected: binaryState(uid('connectivity').config, uid('connectivity').state ?? '', 'unknown'),
      lastSeen: uid('tether_last-seen').availability.available,
    });
    expect(entities()).toEqual({ pump: true, rtt: true, connectivity: true, connected: 'on', lastSeen: true });
    const stateTopic = uid('state').config.state_topic as string;
    const seenBefore = ha.history.length;
    board.uno.freeze(); // hung MCU: lost after 4 x 250 ms, then its 2 s watchdog resets it
    await eventually(() => expect(entities()).toEqual({ pump: false, rtt: false, connectivity: true, connected: 'off', lastSeen: true }), {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    // The state went lost (on a slow machine the watchdog reset may already have moved it on to
    // init by the time the entities are looked at, so the history is what is checked).
    expect(ha.history.slice(seenBefore).filter((m) => m.topic === stateTopic).map((m) => m.payload)).toContain('lost');
    await eventually(() => expect(entities()).toEqual({ pump: true, rtt: true, connectivity: true, connected: 'on', lastSeen: true }), {
      timeoutMs: 15_000,
      intervalMs: 20,
    });
    await eventually(() => expect(uid('tether_reset-cause').state).toBe('watchdog'), { timeoutMs: 10_000, intervalMs: 50 });
  });

  it('a clean stop makes every board entity unavailable and leaves no handles', async () => {
    await gateway.stop();
    await eventually(
      () => {
        for (const e of ha.ofDevice('tether_uno-ha')) expect({ id: e.config.unique_id, available: e.availability.available }).toMatchObject({ available: false });
        expect(binaryState(ha.byUniqueId('tether_gw-ha_connectivity').config, ha.byUniqueId('tether_gw-ha_connectivity').state ?? '', 'unknown')).toBe('off');
      },
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    await ha.close();
    await board.close();
    await broker?.stop();
    expect(await leakedSince(baseline, 3000)).toEqual({});
  });
});
