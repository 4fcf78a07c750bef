import { existsSync, mkdtempSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait-for.ts';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { ControlSocketExtension } from '../../host/control/control-socket-extension.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { HomieExtension } from '../../host/homie/homie-extension.ts';
import { SetCommandsExtension } from '../../host/homie/set-commands-extension.ts';
import { activeResources, leakedSince } from '../support/handles.ts';

// The gateway as a controller with extensions, in process: a protocol-level simulated board
// behind a loopback TCP bridge (no emulator, no Johnny-Five: no stray timers), the embedded
// broker on a free port, and a subscriber with mqtt.js.

const boards: DeviceOnTcp[] = [];
afterEach(async () => {
  for (const b of boards.splice(0)) await b.close();
});

async function board(): Promise<DeviceOnTcp> {
  const b = await serveDeviceOverTcp();
  boards.push(b);
  return b;
}

function config(target: string, extra: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tether-gw-'));
  return validateConfig({
    gateway: { id: 'gw' },
    broker: { embeddedPort: 0 },
    queue: { dir: join(dir, 'queue') },
    devices: [{ id: 'dev-a', port: target, keepalive: { intervalMs: 200, misses: 3 } }],
    ...extra,
  });
}

/** Every message the broker delivers on homie/5/# (retained ones included). */
async function watch(url: string): Promise<{ seen: Array<[string, string]>; close(): Promise<void> }> {
  const client = await mqtt.connectAsync(url, { clientId: `watch-${process.pid}-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 0 });
  const seen: Array<[string, string]> = [];
  client.on('message', (topic, payload) => seen.push([topic, payload.toString()]));
  await client.subscribeAsync('homie/5/#', { qos: 1 });
  return { seen, close: () => client.endAsync() };
}

describe('Gateway: a controller with extensions', () => {
  it('start() in order, stop() undoes it: no socket, server or timer left behind', async () => {
    const b = await board();
    const baseline = activeResources();
    const gateway = new Gateway(config(b.target), new RecordingLogger(), { env: {} });
    // The constructor does nothing.
    expect(activeResources()).toEqual(baseline);
    expect(() => gateway.brokerUrl).toThrow(/not started/);
    const umask = process.umask(0); // the worst case: any local user could reach a 0777 socket
    try {
      await gateway.start();
    } finally {
      process.umask(umask);
    }
    const control = gateway.extension(ControlSocketExtension)!.path!;
    expect(existsSync(control)).toBe(true);
    expect(statSync(control).mode & 0o777).toBe(0o600); // only the daemon's user may request a flash
    await waitFor(() => gateway.devices[0]!.link.state === 'ready', { what: 'gateway.devices[0]!.link.state toBe \'ready\'', timeoutMs: 10_000 });
    await gateway.stop();
    expect(gateway.devices[0]!.link.state).toBe('disconnected');
    expect(existsSync(control)).toBe(false);
    expect(await leakedSince(baseline)).toEqual({});
  });

  it('a step that fails (the metrics port is taken) undoes the earlier ones: broker closed, outboxes closed, nothing connected', async () => {
    const b = await board();
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const taken = (blocker.address() as net.AddressInfo).port;
    const baseline = activeResources();
    const log = new RecordingLogger();
    const cfg = config(b.target, { metrics: { port: taken } });
    const gateway = new Gateway(cfg, log, { env: {} });
    await expect(gateway.start()).rejects.toThrow(/port is in use/);
    expect(log.records.some((r) => r.level === 'error' && /could not start/.test(r.msg ?? ''))).toBe(true);
    // Nothing was connected (the links start last), and the embedded broker is gone.
    expect(gateway.devices[0]!.link.state).toBe('init');
    await expect(mqtt.connectAsync(gateway.brokerUrl, { reconnectPeriod: 0, connectTimeout: 1000 })).rejects.toThrow();
    expect(await leakedSince(baseline)).toEqual({});
    // The journal was closed: a second gateway on the same queue directory starts cleanly.
    await new Promise<void>((r) => blocker.close(() => r()));
    const again = await Gateway.start({ ...cfg, metrics: { ...cfg.metrics!, port: 0 } }, new RecordingLogger(), { env: {} });
    await again.stop();
  });

  it('with the Homie extension switched off, nothing is published for the boards; with it on, $state follows the link', async () => {
    const b = await board();
    const off = await Gateway.start(config(b.target, { homie: { enabled: false }, commands: { enabled: false }, control: { enabled: false } }), new RecordingLogger(), { env: {} });
    expect(off.extension(HomieExtension)).toBeUndefined();
    expect(off.extension(SetCommandsExtension)).toBeUndefined();
    expect(off.extension(ControlSocketExtension)).toBeUndefined();
    const quiet = await watch(off.brokerUrl);
    await waitFor(() => off.devices[0]!.link.state === 'ready', { what: 'off.devices[0]!.link.state toBe \'ready\'', timeoutMs: 10_000 });
    await off.stop();
    await quiet.close();
    expect(quiet.seen.filter(([t]) => t.startsWith('homie/5/dev-a/'))).toEqual([]);

    const b2 = await board();
    const on = await Gateway.start(config(b2.target), new RecordingLogger(), { env: {} });
    const loud = await watch(on.brokerUrl);
    await waitFor(() => loud.seen.some((x) => JSON.stringify(x) === JSON.stringify(['homie/5/dev-a/$state', 'ready'])), { what: 'loud.seen toContainEqual [\'homie/5/dev-a/$state\', \'ready\']', timeoutMs: 10_000 });
    expect(loud.seen.some(([t]) => t === 'homie/5/dev-a/$description')).toBe(true);
    // The gateway's own session may connect after the board is ready (a board without components
    // is ready within a few round trips: no firmata.js handshake to wait for).
    await waitFor(() => loud.seen.some((x) => JSON.stringify(x) === JSON.stringify(['homie/5/gw/$state', 'ready'])), { what: "homie/5/gw/$state 'ready'", timeoutMs: 10_000 });
    await on.stop();
    await waitFor(() => loud.seen.some((x) => JSON.stringify(x) === JSON.stringify(['homie/5/dev-a/$state', 'disconnected'])), { what: 'loud.seen toContainEqual [\'homie/5/dev-a/$state\', \'disconnected\']', timeoutMs: 5000 });
    await loud.close();
  });

  it('a flood of bad /set commands is counted one by one but logged at most 10 times a minute', async () => {
    const b = await board();
    const log = new RecordingLogger();
    const gateway = await Gateway.start(config(b.target), log, { env: {} });
    const client = await mqtt.connectAsync(gateway.brokerUrl, { reconnectPeriod: 0 });
    try {
      await waitFor(() => gateway.devices[0]!.mqtt.connected === true, { what: 'gateway.devices[0]!.mqtt.connected toBe true', timeoutMs: 10_000 });
      // The subscription goes out right after CONNACK: wait until one command gets through.
      let probes = 0;
      await waitFor(
        async () => {
          probes++;
          await client.publishAsync('homie/5/dev-a/nope/x/set', 'true', { qos: 1 });
          return gateway.devices[0]!.counters.setsRejected > 0;
        },
        { what: 'a first /set to reach the extension', timeoutMs: 10_000, intervalMs: 100 },
      );
      // Every probe published while the subscription was going out has been handled (or never will be).
      await waitFor(() => gateway.devices[0]!.counters.setsRejected === probes, { what: 'the probes handled', timeoutMs: 2000 }).catch(() => {});
      const before = gateway.devices[0]!.counters.setsRejected;
      for (let i = 0; i < 200; i++) await client.publishAsync(`homie/5/dev-a/nope/x${i}/set`, 'true', { qos: 1 });
      await waitFor(() => gateway.devices[0]!.counters.setsRejected === before + 200, { what: 'gateway.devices[0]!.counters.setsRejected toBe before + 200', timeoutMs: 10_000 });
      const lines = log.records.filter((r) => r.level === 'warn' && /^rejected \/set/.test(r.msg ?? ''));
      expect(lines).toHaveLength(10);
    } finally {
      await client.endAsync();
      await gateway.stop();
    }
  });
});
