import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { GatewayDevice } from '../../host/gateway/gateway-device.ts';
import type { GatewayEventBus } from '../../host/gateway/gateway-events.ts';
import { StartGate } from '../../host/gateway/start-gate.ts';
import type { BrokerSession } from '../../host/mqtt/broker-session.ts';
import { systemClock } from '../../host/time/clock.ts';
import { waitFor } from '../support/wait-for.ts';

// Real TCP bridges: a simulated board, and a bridge that accepts and never answers (its link
// stays `init` until the handshake bound). The board sessions are never started here (the
// test does not acquire the boards), so an event emitter with a stop() stands in for them.

describe('GatewayDevice: links open a bounded number at a time (issue 15: a fleet start)', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('with one place, the second link connects only once the first has settled (lost at its handshake bound), then comes up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-link-starts-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    let silentConnections = 0;
    const silent = net.createServer((socket) => {
      silentConnections++;
      socket.on('error', () => {});
      cleanups.push(() => void socket.destroy());
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => silent.close(() => r())));
    const board: DeviceOnTcp = await serveDeviceOverTcp();
    cleanups.push(() => board.close());
    let boardConnections = 0;
    const counting = net.createServer((client) => {
      boardConnections++;
      const upstream = net.connect(board.port, '127.0.0.1');
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      cleanups.push(() => {
        client.destroy();
        upstream.destroy();
      });
    });
    await new Promise<void>((r) => counting.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => counting.close(() => r())));

    const keepalive = { intervalMs: 200, misses: 3, handshakeTimeoutMs: 1500 };
    const config = validateConfig({
      gateway: { id: 'gw' },
      queue: { dir: join(dir, 'queue') },
      devices: [
        { id: 'silent', port: `tcp://127.0.0.1:${(silent.address() as net.AddressInfo).port}`, keepalive },
        { id: 'live', port: `tcp://127.0.0.1:${(counting.address() as net.AddressInfo).port}`, keepalive },
      ],
    });
    const gate = new StartGate(1);
    const events = new EventEmitter() as GatewayEventBus;
    const devices = config.devices.map(
      (settings) =>
        new GatewayDevice({
          settings,
          queue: config.queue,
          mqtt: () => Object.assign(new EventEmitter(), { stop: async () => {} }) as unknown as BrokerSession,
          sharedMqtt: false,
          linkStarts: gate,
          events,
          clock: systemClock,
          logger: new RecordingLogger(),
        }),
    );
    for (const d of devices) await d.open();
    cleanups.push(async () => {
      for (const d of devices) await d.stop(0);
    });
    const [first, second] = devices as [GatewayDevice, GatewayDevice];
    await first.start();
    const secondStarted = second.start(); // waits for the place
    await waitFor(() => silentConnections === 1, { timeoutMs: 5000, what: 'the first link connected' });
    expect(gate.inUse).toBe(1);
    expect(gate.queued).toBe(1);
    expect(first.link.state).toBe('init');
    expect(boardConnections).toBe(0);
    // The first settles (lost: nothing answered its handshake): the second takes the place.
    await waitFor(() => first.link.state === 'lost', { timeoutMs: 10_000, what: 'the silent link lost at its handshake bound' });
    await secondStarted;
    await waitFor(() => second.link.state === 'ready', { timeoutMs: 10_000, what: 'the second link ready' });
    expect(boardConnections).toBe(1);
    // Ready settles it too: every place is free again.
    expect(gate.inUse).toBe(0);
    expect(gate.queued).toBe(0);
  });
});
