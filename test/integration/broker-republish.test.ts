import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { refreshTopics } from '../../host/homie/refresh-requests.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { waitFor } from '../support/wait-for.ts';

// Nothing relies on retained messages a broker may not have: a real Mosquitto without
// persistence (so a kill -9 and restart forgets every retained message, as another node of a
// cluster never had them) and an in-process gateway with a simulated board behind a TCP bridge.

interface Received {
  topic: string;
  payload: string;
  retain: boolean;
}

describe('retained state on every reconnect, and refresh requests (Mosquitto)', () => {
  let broker: RunningMosquitto;
  const boards: DeviceOnTcp[] = [];
  const gateways: Gateway[] = [];
  const clients: MqttClient[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'tether-republish-'));
  let counter = 0;

  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true).catch(() => {});
    for (const g of gateways.splice(0)) await g.stop();
    for (const b of boards.splice(0)) await b.close();
  });
  afterAll(async () => {
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function startGateway(gatewayId: string, deviceId: string, broker_: Record<string, unknown> = {}): Promise<Gateway> {
    const board = await serveDeviceOverTcp();
    boards.push(board);
    const config = validateConfig({
      gateway: { id: gatewayId },
      broker: { url: broker.url, keepaliveSec: 5, pingRespTimeoutMs: 1000, backoff: { initialMs: 50, maxMs: 300 }, ...broker_ },
      queue: { dir: join(dir, `queue-${gatewayId}`) },
      devices: [{ id: deviceId, port: board.target, keepalive: { intervalMs: 200, misses: 3 } }],
    });
    const gateway = await Gateway.start(config, new RecordingLogger(), { env: {} });
    gateways.push(gateway);
    await waitFor(() => gateway.devices[0]!.link.state === 'ready', { timeoutMs: 10_000, what: `${deviceId} ready` });
    return gateway;
  }

  async function subscribe(topics: string[]): Promise<Received[]> {
    const client = await mqtt.connectAsync(broker.url, { clientId: `sub-${process.pid}-${counter++}`, protocolVersion: 5, reconnectPeriod: 0 });
    clients.push(client);
    const got: Received[] = [];
    client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), retain: packet.retain }));
    await client.subscribeAsync(topics, { qos: 1 });
    return got;
  }

  it('every reconnect of a board session republishes its retained $state, $description and Home Assistant discovery', async () => {
    const gateway = await startGateway('gw-r', 'dev-r');
    const device = gateway.devices[0]!;
    const wanted = ['homie/5/dev-r/$state', 'homie/5/dev-r/$description', 'homeassistant/+/dev-r/+/config', 'homie/5/gw-r/$state'];
    for (let round = 1; round <= 2; round++) {
      const connects = device.mqtt.stats.connects;
      // kill -9 without persistence: the restarted broker has no retained message at all.
      await broker.restart();
      await waitFor(() => device.mqtt.stats.connects > connects && device.mqtt.connected && device.outbox.size === 0, {
        timeoutMs: 15_000,
        what: `round ${round}: the board session back and its outbox delivered`,
      });
      // What the broker holds, as a new subscriber finds it (retained). A fresh subscriber each
      // try: the gateway's own session reconnects on its own backoff, and what it publishes
      // after a subscriber subscribed reaches that one live (retain false), not retained.
      const complete = (got: Received[]) =>
        got.some((r) => r.topic === 'homie/5/dev-r/$state' && r.payload === 'ready' && r.retain) &&
        got.some((r) => r.topic === 'homie/5/dev-r/$description' && r.retain) &&
        got.some((r) => r.topic.startsWith('homeassistant/') && r.topic.includes('/dev-r/dev-r_') && r.retain) &&
        got.some((r) => r.topic === 'homie/5/gw-r/$state' && r.payload === 'ready' && r.retain);
      let late: Received[] = [];
      await waitFor(
        async () => {
          late = await subscribe(wanted);
          await waitFor(() => complete(late), { timeoutMs: 1000, what: 'retained' }).catch(() => {});
          return complete(late);
        },
        {
          timeoutMs: 15_000,
          intervalMs: 0,
          what: `round ${round}: the retained state back on the broker`,
          detail: () => JSON.stringify(late.map((r) => `${r.topic}${r.retain ? ' (retained)' : ''}=${r.payload.slice(0, 20)}`)),
        },
      );
      expect(JSON.parse(late.find((r) => r.topic === 'homie/5/dev-r/$description')!.payload)).toMatchObject({ homie: '5.0', root: 'gw-r' });
    }
  });

  it('what every connect republishes ($state, $description, facts, discovery) is not journaled: no journal file for a board without components, and a broker outage loses none of it', async () => {
    const gateway = await startGateway('gw-m', 'dev-m');
    const device = gateway.devices[0]!;
    const journal = join(dir, 'queue-gw-m', 'dev-m.outbox');
    await waitFor(() => device.mqtt.connected && device.outbox.size === 0, { timeoutMs: 10_000, what: 'the outbox delivered' });
    expect(existsSync(journal)).toBe(false);
    // The broker goes away, then the board: its `lost` is not queued (the outbox would keep only
    // the latest $state anyway); the reconnect publishes the state then current (republish()).
    await broker.kill9();
    const board = boards.pop()!;
    await board.close();
    await waitFor(() => device.link.state === 'lost', { timeoutMs: 10_000, what: 'the board lost while the broker is away' });
    expect(device.outbox.pending().filter((e) => e.topic.startsWith('homie/5/dev-m/'))).toEqual([]);
    await broker.restart();
    await waitFor(() => device.mqtt.connected && device.outbox.size === 0, { timeoutMs: 15_000, what: 'the outbox delivered again' });
    // Subscribed after: what the broker holds comes retained.
    const late = await subscribe(['homie/5/dev-m/$state']);
    await waitFor(() => late.some((r) => r.retain && r.payload === 'lost'), { timeoutMs: 10_000, what: 'the retained lost on the broker', detail: () => JSON.stringify(late) });
    expect(existsSync(journal)).toBe(false);
  });

  it("a board that reboots while the broker is away: its reset's cause (only the reboot event carries it) is queued and reaches the broker", async () => {
    const gateway = await startGateway('gw-b', 'dev-b');
    const device = gateway.devices[0]!;
    await waitFor(() => device.mqtt.connected && device.outbox.size === 0, { timeoutMs: 10_000, what: 'the outbox delivered' });
    const reboots = () => Object.values(device.link.stats().reboots).reduce((a, b) => a + b, 0);
    expect(reboots()).toBe(0); // so no reset-cause was ever published for it
    await broker.kill9();
    // The same bridge port, a board with a new boot id: the link comes back to a rebooted board.
    const old = boards.pop()!;
    await old.close();
    boards.push(await serveDeviceOverTcp({ port: old.port, bootId: 2 }));
    await waitFor(() => reboots() === 1 && device.link.state === 'ready', { timeoutMs: 10_000, what: 'the reboot seen while the broker is away' });
    expect(device.outbox.pending().filter((e) => e.topic === 'homie/5/dev-b/tether/reset-cause').map((e) => e.payload.toString())).toEqual(['power-on']);
    await broker.restart();
    await waitFor(() => device.mqtt.connected && device.outbox.size === 0, { timeoutMs: 15_000, what: 'the outbox delivered again' });
    const late = await subscribe(['homie/5/dev-b/tether/reset-cause', 'homie/5/dev-b/tether/reboots']);
    await waitFor(() => late.some((r) => r.retain && r.topic.endsWith('reset-cause') && r.payload === 'power-on') && late.some((r) => r.retain && r.topic.endsWith('reboots') && r.payload === '1'), {
      timeoutMs: 10_000,
      what: 'the retained reset cause and reboot count on the broker',
      detail: () => JSON.stringify(late),
    });
  });

  it.each([
    ['one session per board', {}],
    ['one shared session', { sharedSession: true }],
  ])('a refresh request (%s) makes the gateway publish current state, not retained; the broadcast covers the gateway too', async (_name, brokerExtra) => {
    const gatewayId = `gw-${counter++}`;
    const deviceId = `dev-${counter++}`;
    const gateway = await startGateway(gatewayId, deviceId, brokerExtra);
    const got = await subscribe([`homie/5/${deviceId}/#`, `homie/5/${gatewayId}/#`]);
    await waitFor(() => got.some((r) => r.topic === `homie/5/${deviceId}/$state` && r.payload === 'ready'), { timeoutMs: 10_000, what: 'ready' });
    await waitFor(() => gateway.devices[0]!.outbox.size === 0, { timeoutMs: 10_000, what: 'the outbox delivered' });
    const asker = await mqtt.connectAsync(broker.url, { clientId: `ask-${process.pid}-${counter++}`, reconnectPeriod: 0 });
    clients.push(asker);
    const mark = got.length;
    await asker.publishAsync(refreshTopics.device(deviceId), '', { qos: 1 });
    const since = () => got.slice(mark);
    await waitFor(() => since().some((r) => r.topic === `homie/5/${deviceId}/$state`) && since().some((r) => r.topic === `homie/5/${deviceId}/tether/last-seen`), {
      timeoutMs: 10_000,
      what: 'the refresh answer',
      detail: () => JSON.stringify(since()),
    });
    expect(since().find((r) => r.topic === `homie/5/${deviceId}/$state`)).toEqual({ topic: `homie/5/${deviceId}/$state`, payload: 'ready', retain: false });
    expect(since().some((r) => r.topic === `homie/5/${deviceId}/$description`)).toBe(true);
    expect(since().some((r) => r.topic === `homie/5/${gatewayId}/$state`)).toBe(false);
    // The refresh left the retained state as it was (a new subscriber still gets it retained).
    const fresh = await subscribe([`homie/5/${deviceId}/$state`]);
    await waitFor(() => fresh.find((r) => r.retain && r.payload === 'ready'), { timeoutMs: 5000, what: 'the retained $state still there' });

    const mark2 = got.length;
    await asker.publishAsync(refreshTopics.broadcast, 'any payload', { qos: 1 });
    await waitFor(
      () => got.slice(mark2).some((r) => r.topic === `homie/5/${gatewayId}/$state` && r.payload === 'ready' && !r.retain) && got.slice(mark2).some((r) => r.topic === `homie/5/${gatewayId}/$description`),
      { timeoutMs: 10_000, what: 'the gateway device after a broadcast refresh' },
    );
    // The board's own answer comes too (at the end of its 1 s window: it was just refreshed).
    await waitFor(() => got.slice(mark2).some((r) => r.topic === `homie/5/${deviceId}/$state` && r.payload === 'ready'), { timeoutMs: 10_000, what: 'the board after a broadcast refresh' });
  });
});
