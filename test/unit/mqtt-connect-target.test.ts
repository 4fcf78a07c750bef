import mqtt, { type IClientOptions } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { mqttConnectTarget } from '../../host/mqtt/mqtt-connect-target.ts';

/** The options mqtt.js ends up with for a client (never connected: manualConnect opens nothing, so nothing to end). */
function optionsOf(make: (opts: IClientOptions) => mqtt.MqttClient): Record<string, unknown> {
  const client = make({ clientId: 'c', manualConnect: true, username: 'opt-user', password: 'opt-pw' });
  return (client as unknown as { options: Record<string, unknown> }).options;
}

const SAME = ['protocol', 'host', 'hostname', 'port', 'username', 'password', 'clientId'] as const;

describe('mqttConnectTarget', () => {
  it.each([
    'mqtt://127.0.0.1:1883',
    'mqtt://broker.example',
    'mqtts://broker.example:8883',
    'mqtt://user:p%40ss@broker.example:1884',
    'tcp://[::1]:1883',
    'ssl://host.example',
  ])('gives mqtt.js the same connection options as the URL %s', (url) => {
    const fields = mqttConnectTarget(url);
    expect(fields).not.toBeNull();
    const fromUrl = optionsOf((opts) => mqtt.connect(url, opts));
    const fromFields = optionsOf((opts) => mqtt.connect({ ...fields!, ...opts }));
    for (const key of SAME) expect([key, fromFields[key]]).toEqual([key, fromUrl[key]]);
  });

  it('leaves to the URL what the fields cannot say: WebSocket paths, queries, unix sockets', () => {
    for (const url of ['ws://broker.example:8080/mqtt', 'wss://broker.example/mqtt', 'mqtt://broker.example?clientId=x', 'mqtt+unix:///tmp/s', 'http://x']) {
      expect([url, mqttConnectTarget(url)]).toEqual([url, null]);
    }
  });
});
