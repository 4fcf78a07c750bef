import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { serveDeviceOverTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { GatewayDevice } from '../../host/gateway/gateway-device.ts';
import type { GatewayEventBus } from '../../host/gateway/gateway-events.ts';
import { StartGate } from '../../host/gateway/start-gate.ts';
import { BrokerSession } from '../../host/mqtt/broker-session.ts';
import { systemClock } from '../../host/time/clock.ts';
import { startMosquitto } from '../support/mosquitto.ts';
import { waitFor, within } from '../support/wait-for.ts';

// Real Mosquitto, real board sessions (BrokerSession) and simulated boards over TCP. Between the
// sessions and the broker a relay that can hold back what the broker sends on one connection
// (it stops reading that socket: the bytes wait in the kernel, nothing is lost), as a busy
// broker is late with its PUBACKs.

interface HoldingRelay {
  port: number;
  /** Connections accepted so far, in order. */
  connections: number;
  /** From now on, what the broker sends on connection `index` (0-based) waits after its first chunk (the CONNACK). */
  holdAfterConnack(index: number): void;
  release(): void;
  close(): Promise<void>;
}

async function startHoldingRelay(targetPort: number): Promise<HoldingRelay> {
  const sockets = new Set<net.Socket>();
  const held: net.Socket[] = [];
  const holdIndexes = new Set<number>();
  let connections = 0;
  const server = net.createServer((client) => {
    const index = connections++;
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.pipe(upstream);
    let chunks = 0;
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk);
      if (++chunks === 1 && holdIndexes.has(index)) {
        upstream.pause();
        held.push(upstream);
      }
    });
    upstream.on('end', () => client.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return connections;
    },
    holdAfterConnack: (index) => void holdIndexes.add(index),
    release: () => {
      holdIndexes.clear();
      for (const s of held.splice(0)) s.resume();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('GatewayDevice: board sessions start a bounded number at a time (issue 15: a fleet start)', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('with one place, the second session connects only once the first is up and its start-up publishes are acknowledged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-session-starts-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const relay = await startHoldingRelay(broker.port);
    cleanups.push(() => relay.close());
    const boards = await Promise.all([serveDeviceOverTcp(), serveDeviceOverTcp()]);
    cleanups.push(async () => {
      for (const b of boards) await b.close();
    });

    const config = validateConfig({
      gateway: { id: 'gw' },
      queue: { dir: join(dir, 'queue') },
      devices: boards.map((b, i) => ({ id: `board${i}`, port: `tcp://127.0.0.1:${b.port}` })),
    });
    const gate = new StartGate(1);
    const events = new EventEmitter() as GatewayEventBus;
    // What an extension does on a board's 'up': its start-up publishes (retained state, configs).
    const ups: string[] = [];
    events.on('brokerUp', (device) => {
      if (!device) return;
      ups.push(device.id);
      for (let i = 0; i < 5; i++) device.publish(`test/${device.id}/fact${i}`, `value ${i}`, 'state');
    });
    const sessions: BrokerSession[] = [];
    const devices = config.devices.map(
      (settings) =>
        new GatewayDevice({
          settings,
          queue: config.queue,
          mqtt: () => {
            const session = new BrokerSession({ url: `mqtt://127.0.0.1:${relay.port}`, clientId: `tether.board.${settings.id}`, protocolVersion: 5 });
            sessions.push(session);
            return session;
          },
          sharedMqtt: false,
          sessionStarts: gate,
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
    const claim = { gateway: 'gw', instance: 'test', epoch: 1 };

    relay.holdAfterConnack(0); // the first session's PUBACKs are late
    await first.acquire(claim, { superseded: false });
    const secondAcquired = second.acquire(claim, { superseded: false }); // waits for the place
    await waitFor(() => ups.includes('board0'), { timeoutMs: 10_000, what: 'the first session up' });
    // A fixed wait on purpose: long enough for the second session to connect, had the first
    // given its place back at its CONNACK (it used to).
    await new Promise((r) => setTimeout(r, 500));
    expect(relay.connections).toBe(1);
    expect(gate.inUse).toBe(1);
    expect(gate.queued).toBe(1);
    expect(ups).toEqual(['board0']);

    relay.release(); // the PUBACKs arrive: the first gives its place to the second
    await within(secondAcquired, { timeoutMs: 10_000, what: 'the second board acquired (its session given a place)' });
    await waitFor(() => ups.includes('board1'), { timeoutMs: 10_000, what: 'the second session up' });
    expect(relay.connections).toBe(2);
    await waitFor(() => gate.inUse === 0, { timeoutMs: 10_000, what: "the second session's place given back once its publishes are acknowledged" });
    expect(gate.queued).toBe(0);
  });
});
