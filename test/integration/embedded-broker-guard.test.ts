import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor, within } from '../support/wait-for.ts';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { startEmbeddedBroker } from '../../host/mqtt/embedded-broker.ts';

// The embedded broker (Aedes in process) keeps strangers and floods out: with credentials in
// the config it admits that user only, and a packet announcing more than its limit is refused
// on its header, before Aedes buffers the body.

const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe('the embedded broker', () => {
  it('with broker.username/password and no URL: the gateway connects, a client without them is refused', async () => {
    const board: DeviceOnTcp = await serveDeviceOverTcp();
    closers.push(() => board.close());
    const dir = mkdtempSync(join(tmpdir(), 'tether-embedded-auth-'));
    const config = validateConfig({
      gateway: { id: 'gw-auth' },
      broker: { embeddedPort: 0, username: 'tether', password: 'local-only-pw' },
      queue: { dir: join(dir, 'q') },
      devices: [{ id: 'dev-auth', port: board.target, keepalive: { intervalMs: 200, misses: 3 } }],
    });
    const log = new RecordingLogger();
    const gateway = await Gateway.start(config, log, { env: {} });
    closers.push(() => gateway.stop());
    await waitFor(() => gateway.devices[0]!.mqtt.connected && gateway.mqtt.connected === true, { what: 'gateway.devices[0]!.mqtt.connected && gateway.mqtt.connected toBe true', timeoutMs: 10_000 });

    await expect(mqtt.connectAsync(gateway.brokerUrl, { reconnectPeriod: 0, clientId: 'stranger' })).rejects.toThrow(/Not authorized|Bad username or password/i);
    await expect(mqtt.connectAsync(gateway.brokerUrl, { reconnectPeriod: 0, username: 'tether', password: 'wrong' })).rejects.toThrow(/Not authorized|Bad username or password/i);
    // Nobody without the password took over the board's client id: its session is still up.
    expect(gateway.devices[0]!.mqtt.connected).toBe(true);
    const friend = await mqtt.connectAsync(gateway.brokerUrl, { reconnectPeriod: 0, username: 'tether', password: 'local-only-pw' });
    await friend.endAsync();
    expect(log.records.filter((r) => r.level === 'warn' && /refused a client/.test(r.msg ?? ''))).toHaveLength(2);
  });

  it('refuses a packet announcing more than its limit before the body arrives; other clients go on', async () => {
    const broker = await startEmbeddedBroker({ port: 0, maxPacketBytes: 64 * 1024 });
    closers.push(() => broker.close());
    const good = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    closers.push(() => good.endAsync());
    const raw = net.connect({ port: broker.port, host: '127.0.0.1' });
    await new Promise<void>((r) => raw.once('connect', () => r()));
    raw.write(mqttPacket.generate({ cmd: 'connect', clientId: 'flood', protocolVersion: 4, keepalive: 30, clean: true }));
    const closed = new Promise<void>((r) => raw.once('close', () => r()));
    raw.on('error', () => {});
    // A PUBLISH that says 10 MiB follow: only its header is sent.
    const header = mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(10 * 1024 * 1024), qos: 0, retain: false, dup: false }).subarray(0, 16);
    raw.write(header);
    await within(closed, { timeoutMs: 10_000, what: 'the raw connection closed' });
    await good.publishAsync('still/here', 'yes', { qos: 1 });
    expect(broker.clientCount()).toBe(1);
  });
});
