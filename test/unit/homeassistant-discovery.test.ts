import { describe, expect, it } from 'vitest';
import { createComponent } from '../../host/components/create-component.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { parseConfig, ConfigError } from '../../host/config/load-config.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { HomeAssistantExtension } from '../../host/homeassistant/homeassistant-extension.ts';
import { componentSchema } from '../../host/config/config-schema.ts';
import { boardAvailability, boardAvailable, gatewayAvailability } from '../../host/homeassistant/availability.ts';
import { boardDiscovery, boardDiscoveryTopics, gatewayDiscovery, ownDiscoveryTopics, type BoardDescription, type DiscoveryContext } from '../../host/homeassistant/discovery.ts';
import type { HomieState } from '../../host/homie/homie-topics.ts';
import { binaryState, EntityAvailability, parseDiscoveryTopic, validateDiscovery, type EntityConfig } from '../support/home-assistant.ts';

// The payloads are checked against test/support/home-assistant.ts: schemas and the availability
// rule written from Home Assistant's MQTT documentation (not checked against a running one).

const ctx: DiscoveryContext = { prefix: 'homeassistant', gatewayId: 'lab', gatewayName: 'Lab', tetherVersion: '0.1.0', commands: true };

const components = [
  { type: 'led', id: 'status', pin: 13 },
  { type: 'relay', id: 'pump', pin: 8, name: 'Pump' },
  { type: 'button', id: 'door', pin: 2 },
  { type: 'sensor', id: 'light', pin: 'A0' },
].map((c) => createComponent(componentSchema.parse(c)));

const board = (extra: Partial<BoardDescription> = {}): BoardDescription => ({
  id: 'bench-uno',
  name: 'Bench Uno',
  board: 'uno',
  components,
  firmware: { name: 'tether', fwMajor: 1, fwMinor: 3 },
  ...extra,
});

function validated(messages: Array<{ topic: string; config: Record<string, unknown> }>) {
  return messages.map((m) => ({ topic: m.topic, ...validateDiscovery('homeassistant', m.topic, JSON.stringify(m.config)) }));
}

describe('Home Assistant discovery payloads', () => {
  it('every component and keepalive entity is a valid config on a documented discovery topic', () => {
    const all = validated([...gatewayDiscovery(ctx), ...boardDiscovery(ctx, board())]);
    const kinds = Object.fromEntries(all.map((m) => [m.config.unique_id, m.component]));
    expect(kinds).toEqual({
      tether_lab_connectivity: 'binary_sensor',
      'tether_bench-uno_status_on': 'light',
      'tether_bench-uno_pump_closed': 'switch',
      'tether_bench-uno_door_pressed': 'binary_sensor',
      'tether_bench-uno_light_value': 'sensor',
      'tether_bench-uno_connectivity': 'binary_sensor',
      'tether_bench-uno_state': 'sensor',
      'tether_bench-uno_tether_rtt': 'sensor',
      'tether_bench-uno_tether_last-seen': 'sensor',
      'tether_bench-uno_tether_reboots': 'sensor',
      'tether_bench-uno_tether_reset-cause': 'sensor',
      'tether_bench-uno_tether_asleep-time': 'sensor',
      'tether_bench-uno_tether_boot-id': 'sensor',
    });
    for (const m of all) {
      // node_id = the device: the gateway's entity under the gateway id, a board's under the
      // board id (whichever gateway serves it); one subscription per node_id finds them again.
      const nodeId = m.config.unique_id === 'tether_lab_connectivity' ? 'lab' : 'bench-uno';
      expect(parseDiscoveryTopic('homeassistant', m.topic)).toMatchObject({ component: m.component, nodeId });
      expect(m.topic).toMatch(new RegExp(`^${ownDiscoveryTopics('homeassistant', nodeId).replaceAll('+', '[^/]+')}$`));
      expect(m.config.qos).toBe(1);
      expect(m.config.origin).toEqual({ name: 'tether', sw_version: '0.1.0' });
    }
    // Keepalive facts are diagnostic entities; components are not.
    const diagnostic = all.filter((m) => m.config.entity_category === 'diagnostic').map((m) => m.config.unique_id);
    expect(diagnostic).toHaveLength(9);
    expect(diagnostic.some((id) => /_(status|pump|door|light)_/.test(id!))).toBe(false);
    expect(new Set(all.map((m) => m.topic)).size).toBe(all.length);
  });

  it('states and commands are the Homie topics; commands are Homie /set payloads, never retained', () => {
    const all = validated(boardDiscovery(ctx, board()));
    const pump = all.find((m) => m.config.unique_id === 'tether_bench-uno_pump_closed')!.config;
    expect(pump).toMatchObject({
      name: 'Pump',
      state_topic: 'homie/5/bench-uno/pump/closed',
      command_topic: 'homie/5/bench-uno/pump/closed/set',
      payload_on: 'true',
      payload_off: 'false',
      retain: false,
    });
    const light = all.find((m) => m.component === 'light')!.config;
    expect(light).toMatchObject({ command_topic: 'homie/5/bench-uno/status/on/set', payload_on: 'true', retain: false });
    const rtt = all.find((m) => m.config.unique_id?.endsWith('_rtt'))!.config;
    expect(rtt).toMatchObject({ state_topic: 'homie/5/bench-uno/tether/rtt', device_class: 'duration', unit_of_measurement: 'ms', state_class: 'measurement' });
    const seen = all.find((m) => m.config.unique_id?.endsWith('_last-seen'))!.config;
    expect(seen).toMatchObject({ device_class: 'timestamp' });
  });

  it("a board's topics, unique_ids and device name the board only: another gateway serving it publishes the same configs", () => {
    const other: DiscoveryContext = { ...ctx, gatewayId: 'garage', gatewayName: 'Garage' };
    const here = boardDiscovery(ctx, board());
    const there = boardDiscovery(other, board());
    expect(there.map((m) => m.topic)).toEqual(here.map((m) => m.topic));
    expect(there.map((m) => m.config.unique_id)).toEqual(here.map((m) => m.config.unique_id));
    expect(there.map((m) => (m.config.device as { identifiers: string[] }).identifiers)).toEqual(here.map((m) => (m.config.device as { identifiers: string[] }).identifiers));
    // What does differ is who serves it: the device's via_device and the availability from that gateway's $state.
    expect(there[0]!.config.device).toMatchObject({ via_device: 'tether_garage' });
    expect(JSON.stringify(there)).not.toMatch(/"homie\/5\/lab\/|tether_lab/);
  });

  it("the topics alone (the daemon's start) are boardDiscovery's topics, in order, with commands on and off", () => {
    for (const context of [ctx, { ...ctx, commands: false }]) {
      for (const b of [board(), board({ components: [], firmware: null }), board({ board: 'espruino' })]) {
        const topics = boardDiscovery(context, b).map((m) => m.topic);
        expect(topics.length).toBeGreaterThan(7);
        expect(boardDiscoveryTopics(context, b)).toEqual(topics);
      }
    }
    // The components' topics follow what they are: a light and a switch with commands, binary sensors without.
    expect(boardDiscoveryTopics(ctx, board()).filter((t) => /status|pump/.test(t))).toEqual([
      'homeassistant/light/bench-uno/bench-uno_status_on/config',
      'homeassistant/switch/bench-uno/bench-uno_pump_closed/config',
    ]);
    expect(boardDiscoveryTopics({ ...ctx, commands: false }, board()).filter((t) => /status|pump/.test(t))).toEqual([
      'homeassistant/binary_sensor/bench-uno/bench-uno_status_on/config',
      'homeassistant/binary_sensor/bench-uno/bench-uno_pump_closed/config',
    ]);
  });

  it('a read-only gateway (commands off) shows relays and LEDs as binary sensors', () => {
    const all = validated(boardDiscovery({ ...ctx, commands: false }, board()));
    expect(all.filter((m) => m.config.command_topic !== undefined)).toEqual([]);
    expect(all.find((m) => m.config.unique_id === 'tether_bench-uno_pump_closed')!.component).toBe('binary_sensor');
  });

  it('one device per board, via the gateway, with firmware facts from HELLO once known', () => {
    const [gw] = validated(gatewayDiscovery(ctx));
    expect(gw!.config.device).toMatchObject({ identifiers: ['tether_lab'], name: 'Lab', manufacturer: 'tether', sw_version: '0.1.0' });
    const [uno] = validated(boardDiscovery(ctx, board()));
    expect(uno!.config.device).toEqual({
      identifiers: ['tether_bench-uno'],
      name: 'Bench Uno',
      manufacturer: 'Arduino',
      model: 'Uno (ATmega328P)',
      sw_version: 'tether 1.3',
      via_device: 'tether_lab',
    });
    const [before] = validated(boardDiscovery(ctx, board({ firmware: null })));
    expect(before!.config.device?.sw_version).toBeUndefined();
    const [pico] = validated(boardDiscovery(ctx, board({ board: 'espruino', components: [], firmware: { name: 'tether-espruino PICO_R1_3', fwMajor: 1, fwMinor: 0 } })));
    expect(pico!.config.device).toMatchObject({ manufacturer: 'Espruino', model: 'Espruino PICO_R1_3' });
  });

  it('a schema written from the documentation rejects what Home Assistant would reject', () => {
    const bad = (component: string, config: object) => () => validateDiscovery('homeassistant', `homeassistant/${component}/n/o/config`, JSON.stringify(config));
    expect(bad('switch', { state_topic: 'a' })).toThrow(/command_topic/); // command_topic is required
    expect(bad('sensor', { state_topic: 'a', device_class: 'enum' })).toThrow(/options/);
    expect(bad('sensor', { state_topic: 'a', device_class: 'timestamp', state_class: 'measurement' })).toThrow(/timestamp/);
    expect(bad('sensor', { state_topic: 'a', availability_topic: 'b', availability: [{ topic: 'c' }] })).toThrow(/availability_topic/);
    expect(bad('sensor', { state_topic: 'a', device: { identifiers: ['x'] } })).toThrow(/unique_id/);
    expect(bad('sensor', { state_topic: 'a', unique_id: 'u', device: { name: 'x' } })).toThrow(/identifiers or connections/);
    expect(bad('binary_sensor', { state_topic: 'a', availabilty_mode: 'all' })).toThrow(); // a typo is not a field
    expect(() => validateDiscovery('homeassistant', 'homeassistant/sensor/bad.id/config', '{}')).toThrow(/not a discovery topic/);
  });
});

describe('availability (Home Assistant availability_mode all over two $state topics)', () => {
  const states: Array<HomieState | undefined> = [undefined, 'init', 'ready', 'sleeping', 'lost', 'disconnected'];

  it("a board's entity is available exactly while the daemon runs and the board is ready or sleeping", () => {
    const config = { ...boardAvailability('lab', 'uno'), availability_mode: 'all' as const };
    for (const gw of states) {
      for (const dev of states) {
        const model = new EntityAvailability(config as EntityConfig);
        if (gw) model.onMessage('homie/5/lab/$state', gw);
        if (dev) model.onMessage('homie/5/uno/$state', dev);
        expect({ gw, dev, available: model.available }).toEqual({ gw, dev, available: boardAvailable(gw, dev) });
      }
    }
    // The rule itself, spelled out for the cases the issue names.
    expect(boardAvailable('lost', 'ready')).toBe(false); // daemon killed: the gateway's will
    expect(boardAvailable('ready', 'lost')).toBe(false); // board lost
    expect(boardAvailable('ready', 'sleeping')).toBe(true); // asleep: commands are queued
  });

  it('order does not matter with mode all, and a later ready makes it available again', () => {
    const model = new EntityAvailability(boardAvailability('lab', 'uno') as EntityConfig);
    model.onMessage('homie/5/uno/$state', 'ready');
    expect(model.available).toBe(false); // the gateway has said nothing yet
    model.onMessage('homie/5/lab/$state', 'ready');
    expect(model.available).toBe(true);
    model.onMessage('homie/5/uno/$state', 'lost');
    expect(model.available).toBe(false);
    model.onMessage('homie/5/uno/$state', 'ready');
    expect(model.available).toBe(true);
  });

  it('connectivity stays available while the daemon runs and says off when the board is lost', () => {
    const connectivity = validated(boardDiscovery(ctx, board())).find((m) => m.config.unique_id === 'tether_bench-uno_connectivity');
    expect(connectivity!.config.device_class).toBe('connectivity');
    expect(connectivity!.config.availability).toEqual(gatewayAvailability('lab').availability);
    expect(binaryState(connectivity!.config, 'lost', 'unknown')).toBe('off');
    expect(binaryState(connectivity!.config, 'sleeping', 'unknown')).toBe('on');
    expect(binaryState(connectivity!.config, 'ready', 'unknown')).toBe('on');
  });
});

describe('homeassistant config', () => {
  const device = 'devices:\n  - id: uno-1\n    port: /dev/ttyACM0\n';

  it('is on by default with the standard prefix and birth topic', () => {
    expect(parseConfig(device).homeassistant).toEqual({ enabled: true, prefix: 'homeassistant', statusTopic: 'homeassistant/status' });
  });

  it('takes a prefix without wildcards', () => {
    expect(() => parseConfig(`homeassistant: { prefix: "ha/#" }\n${device}`)).toThrow(ConfigError);
    try {
      parseConfig(`homeassistant: { prefix: "ha/#" }\n${device}`);
    } catch (err) {
      expect((err as ConfigError).problems.join('\n')).toMatch(/homeassistant.prefix/);
    }
    expect(parseConfig(`homeassistant: { prefix: "ha/discovery" }\n${device}`).homeassistant.prefix).toBe('ha/discovery');
  });

  it('is an extension of its own, switched off with homie (its entities read the Homie topics) or by itself', () => {
    const extensions = (text: string) => {
      const log = new RecordingLogger();
      return { ha: new Gateway(parseConfig(`${text}\n${device}`), log, { env: {} }).extension(HomeAssistantExtension), log: log.records.map((r) => r.msg) };
    };
    expect(extensions('').ha).toBeInstanceOf(HomeAssistantExtension);
    expect(extensions('homeassistant: { enabled: false }').ha).toBeUndefined();
    const withoutHomie = extensions('homie: { enabled: false }');
    expect(withoutHomie.ha).toBeUndefined();
    expect(withoutHomie.log).toContain('Home Assistant discovery is off because homie is off (its entities read the Homie topics)');
  });
});
