import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig } from '../../host/config/load-config.ts';

const device = (extra = '') => `devices:\n  - id: uno-1\n    port: /dev/ttyACM0\n${extra}`;

function problems(text: string): string[] {
  try {
    parseConfig(text, 'tether.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('the config was accepted');
}

describe('config validation', () => {
  it('turns a minimal config into typed settings with documented defaults', () => {
    const config = parseConfig(device());
    expect(config.gateway).toEqual({ id: 'tether-gateway', name: 'tether gateway' });
    expect(config.broker.url).toBeUndefined();
    expect(config.broker).toMatchObject({ embeddedPort: 1883, keepaliveSec: 30, pingRespTimeoutMs: 5000, protocolVersion: 'auto', sharedSession: false, urls: [] });
    expect(config.devices[0]).toMatchObject({ id: 'uno-1', port: '/dev/ttyACM0', baudRate: 57600, keepalive: { intervalMs: 1000, misses: 3, detector: 'fixed' }, components: [] });
    expect(config.queue.maxEntries).toBe(10_000);
  });

  it('accepts a full config with components, device settings, TLS and a TCP bridge', () => {
    const config = parseConfig(`
gateway: { id: lab, name: Lab }
broker: { url: "mqtts://broker:8883", username: u, password: p, tls: { ca: /etc/ca.pem } }
devices:
  - id: bench
    port: tcp://10.0.0.5:2000
    keepalive: { intervalMs: 500, misses: 4, detector: phi }
    config: { watchdogMs: 1000, policy: sleep, sleepMs: 5000 }
    components:
      - { type: led, id: status, pin: 13 }
      - { type: relay, id: pump, pin: 8, normally: closed }
      - { type: button, id: door, pin: 2 }
      - { type: sensor, id: light, pin: A0, freq: 100 }
`);
    expect(config.devices[0]!.components.map((c) => c.type)).toEqual(['led', 'relay', 'button', 'sensor']);
    expect(config.devices[0]!.config).toMatchObject({ watchdogMs: 1000, policy: 'sleep', hostTimeoutMs: 0, sleepMs: 5000, awakeMs: 1000 });
  });

  // Each mistake gives one precise line: where, what was expected, what was there.
  it.each([
    ['an empty file', '', 'the file is empty'],
    ['broken YAML', 'devices: [\n', /^not valid YAML: .* at line 2, column 1$/],
    ['a duplicated key', 'devices: []\ndevices: []\n', 'not valid YAML: duplicated mapping key at line 2, column 1'],
    ['an unknown tag', 'devices: !custom []\n', /^not valid YAML: unknown tag .*custom.* at line 1/],
    ['two documents', 'devices: []\n---\ndevices: []\n', /^not valid YAML: expected a single document/],
    ['a YAML 1.1 boolean (YAML 1.2 reads `yes` as a string)', `homeassistant: { enabled: yes }\n${device()}`, 'homeassistant.enabled: expected boolean, got "yes"'],
    ['no devices', 'gateway:\n  id: gw\n', 'devices: expected array, missing'],
    ['an empty device list', 'devices: []\n', /^devices: expected at least 1 item/],
    ['an unknown top-level key', `colour: red\n${device()}`, 'colour: unknown key'],
    ['an unknown device key (typo)', device('    prot: 1\n'), 'devices[0].prot: unknown key'],
    ['a bad device id', 'devices:\n  - id: Uno_1\n    port: /dev/ttyACM0\n', /^devices\[0\]\.id: expected an id of lowercase letters.*got "Uno_1"$/],
    ['a missing port', 'devices:\n  - id: uno-1\n', 'devices[0].port: expected string, missing'],
    ['a TCP port out of range', 'devices:\n  - id: uno-1\n    port: tcp://host:99999\n', /^devices\[0\]\.port: .*port 99999 is out of range 1-65535.*got "tcp:\/\/host:99999"$/],
    ['an unsupported scheme', 'devices:\n  - id: uno-1\n    port: udp://x:1\n', /^devices\[0\]\.port: .*scheme "udp" is not supported/],
    ['a baud rate that is not a number', device('    baudRate: fast\n'), 'devices[0].baudRate: expected number, got "fast"'],
    ['an unknown component type', device('    components:\n      - { type: servo, id: s, pin: 9 }\n'), 'devices[0].components[0].type: expected one of "led", "relay", "button", "sensor", got "servo"'],
    ['a serial pin used as a component pin', device('    components:\n      - { type: led, id: s, pin: 1 }\n'), 'devices[0].components[0].pin: expected >= 2, got 1'],
    ['an analog pin the Uno does not have', device('    components:\n      - { type: sensor, id: s, pin: A7 }\n'), 'devices[0].components[0].pin: expected A0-A5, got "A7"'],
    ['two components with one id', device('    components:\n      - { type: led, id: s, pin: 13 }\n      - { type: relay, id: s, pin: 8 }\n'), 'devices[0].components[1].id: duplicate component id (also components[0]), got "s"'],
    ['two components on one pin', device('    components:\n      - { type: led, id: a, pin: 13 }\n      - { type: relay, id: b, pin: 13 }\n'), 'devices[0].components[1].pin: pin 13 is already used by components[0], got 13'],
    ['the reserved node id', device('    components:\n      - { type: led, id: tether, pin: 13 }\n'), /'tether' is reserved/],
    ['a watchdog time the chip cannot do', device('    config: { watchdogMs: 1234 }\n'), 'devices[0].config.watchdogMs: one of 0 (off), 250, 500, 1000, 2000, 4000, 8000, got 1234'],
    ['a watchdog shorter than the firmware allows', device('    config: { watchdogMs: 120 }\n'), 'devices[0].config.watchdogMs: one of 0 (off), 250, 500, 1000, 2000, 4000, 8000, got 120'],
    ['an unknown policy', device('    config: { policy: nap }\n'), 'devices[0].config.policy: expected one of "stay", "sleep", "reset", got "nap"'],
    ['a negative ping interval', device('    keepalive: { intervalMs: -5 }\n'), 'devices[0].keepalive.intervalMs: expected >= 50, got -5'],
    ['a broker URL with the wrong scheme', `broker:\n  url: http://x\n${device()}`, /^broker\.url: expected a broker URL such as mqtt:\/\/host:1883.*got "http:\/\/x"$/],
    ['a password without a username', `broker:\n  url: mqtt://x\n  password: p\n${device()}`, 'broker.password: password given without username, got ***'],
    ['two devices with one id', 'devices:\n  - id: a\n    port: /dev/a\n  - id: a\n    port: /dev/b\n', 'devices[1].id: duplicate device id (also devices[0]), got "a"'],
    ['two devices on one port', 'devices:\n  - id: a\n    port: /dev/a\n  - id: b\n    port: /dev/a\n', 'devices[1].port: port already used by devices[0], got "/dev/a"'],
    [
      'an Espruino board with components',
      device('    board: espruino\n    components:\n      - { type: led, id: s, pin: 13 }\n'),
      'devices[0].components: an Espruino board runs no Firmata, so it cannot have Johnny-Five components: remove components (the keepalive, leases and state registers work without them) or use board: uno, got [{"type":"led","id":"s","pin":13}]',
    ],
    ['an unknown board', device('    board: nano\n'), 'devices[0].board: expected one of "uno", "espruino", got "nano"'],
    ['a device with the gateway id', `gateway:\n  id: uno-1\n${device()}`, `devices[0].id: same id as the gateway ('uno-1'), got "uno-1"`],
  ])('rejects %s', (_what, text, expected) => {
    const found = problems(text);
    expect(found).toHaveLength(1);
    if (typeof expected === 'string') expect(found[0]).toBe(expected);
    else expect(found[0]).toMatch(expected);
  });

  it('an Espruino device: board espruino, no components, 9600 baud unless given', () => {
    const config = parseConfig('devices:\n  - id: pico\n    port: /dev/ttyACM1\n    board: espruino\n  - id: wifi\n    port: tcp://10.0.0.9:23\n    board: espruino\n    baudRate: 115200\n  - id: uno-1\n    port: /dev/ttyACM0\n');
    expect(config.devices.map((d) => [d.id, d.board, d.baudRate, d.components])).toEqual([
      ['pico', 'espruino', 9600, []],
      ['wifi', 'espruino', 115200, []],
      ['uno-1', 'uno', 57600, []],
    ]);
  });

  it('broker.urls: several broker URLs tried in turn, url is the first; broker.url alone still works', () => {
    const cluster = parseConfig(`broker: { urls: ["mqtt://a:1883", "mqtt://b:1883"] }\n${device()}`);
    expect(cluster.broker.urls).toEqual(['mqtt://a:1883', 'mqtt://b:1883']);
    expect(cluster.broker.url).toBe('mqtt://a:1883');
    const one = parseConfig(`broker: { url: "mqtt://a:1883", protocolVersion: 4 }\n${device()}`);
    expect(one.broker.urls).toEqual(['mqtt://a:1883']);
    expect(one.broker.protocolVersion).toBe(4);
    expect(problems(`broker: { url: "mqtt://a:1883", urls: ["mqtt://b:1883"] }\n${device()}`).join('\n')).toMatch(/url or urls, not both/);
    expect(problems(`broker: { urls: ["http://b"] }\n${device()}`).join('\n')).toMatch(/broker URL/);
    expect(problems(`broker: { urls: [] }\n${device()}`).length).toBeGreaterThan(0);
    expect(problems(`broker: { protocolVersion: 3 }\n${device()}`).join('\n')).toMatch(/protocolVersion/);
  });

  it('lists every problem at once', () => {
    expect(problems(`colour: red\ndevices:\n  - id: Bad\n    port: /dev/a\n    baudRate: x\n`)).toHaveLength(3);
  });

  it('reports a missing file by name', async () => {
    await expect(loadConfig('/nonexistent/tether.yaml')).rejects.toThrow('/nonexistent/tether.yaml: file not found');
  });

  it('reads JSON as well as YAML', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tether-config-')), 'tether.json');
    writeFileSync(path, JSON.stringify({ devices: [{ id: 'a', port: 'tcp://127.0.0.1:2000' }] }));
    expect((await loadConfig(path)).devices[0]!.port).toBe('tcp://127.0.0.1:2000');
  });
});

describe('the example config in the repository', () => {
  it('is valid', async () => {
    const config = await loadConfig(new URL('../../tether.example.yaml', import.meta.url).pathname);
    expect(config.devices[0]!.components).toHaveLength(4);
  });
});
