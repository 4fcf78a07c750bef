import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { BoardOnTcp } from '../../emulator/avr/board-on-tcp.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import type { DaemonProcess, LogLine } from '../support/daemon-process.ts';
import { OwnerWatcher, pairDaemon } from '../support/failover-pair.ts';
import { FakeHomeAssistant, type ModelEntity } from '../support/home-assistant.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { waitFor } from '../support/wait-for.ts';

// Issue 16: a board that moves to another gateway is one Home Assistant device. Real parts as in
// failover-daemons.test.ts (Mosquitto, two `tether daemon` processes, our firmware behind a TCP
// bridge), Home Assistant discovery on. A subscriber to `homeassistant/#` (the model of Home
// Assistant in test/support/home-assistant.ts) must see one set of config topics for the board
// after the failover, republished by the new owner, and none of the naming by gateway that
// earlier versions left retained (each gateway clears its own on start).

const BOARD = 'b1';
const STATE = `homie/5/${BOARD}/$state`;
const matches = (re: RegExp) => (l: LogLine) => re.test(l.msg ?? '');

/** A config as tether before this change published it: under the gateway's node_id, unique_id and device by gateway. */
function legacyConfig(gatewayId: string): { topic: string; payload: string } {
  return {
    topic: `homeassistant/switch/${gatewayId}/${BOARD}_pump_closed/config`,
    payload: JSON.stringify({
      name: 'pump',
      unique_id: `tether_${gatewayId}_${BOARD}_pump_closed`,
      state_topic: `homie/5/${BOARD}/pump/closed`,
      command_topic: `homie/5/${BOARD}/pump/closed/set`,
      payload_on: 'true',
      payload_off: 'false',
      device: { identifiers: [`tether_${gatewayId}_${BOARD}`], name: BOARD, via_device: `tether_${gatewayId}` },
    }),
  };
}

/** The entities Home Assistant has that read or command the board's Homie topics. */
const boardEntities = (ha: FakeHomeAssistant): ModelEntity[] =>
  [...ha.entities.values()].filter((e) => [e.config.state_topic, e.config.command_topic].some((t) => typeof t === 'string' && t.startsWith(`homie/5/${BOARD}/`)));

describe('Home Assistant discovery across a failover (Mosquitto, two daemons)', () => {
  let broker: RunningMosquitto;
  let board: BoardOnTcp;
  let watcher: OwnerWatcher;
  let ha: FakeHomeAssistant | undefined;
  let fresh: FakeHomeAssistant | undefined;
  const daemons: DaemonProcess[] = [];

  afterAll(async () => {
    for (const d of daemons) await d.kill9();
    await watcher?.close();
    await ha?.close();
    await fresh?.close();
    await board?.close();
    await broker?.stop();
  });

  it('the new owner republishes the same config topics: one device for the board, no configs left by gateway', async () => {
    broker = await startMosquitto();
    board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    // What an earlier version of each gateway left retained on the broker.
    const seeder = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    for (const gw of ['gw-a', 'gw-b']) await seeder.publishAsync(legacyConfig(gw).topic, legacyConfig(gw).payload, { qos: 1, retain: true });
    await seeder.endAsync();

    ha = await FakeHomeAssistant.connect(broker.url);
    await waitFor(() => ha!.ofDevice('tether_gw-a_b1').length === 1 && ha!.ofDevice('tether_gw-b_b1').length === 1, { timeoutMs: 10_000, what: 'the seeded configs' });
    watcher = await OwnerWatcher.connect(broker.url, BOARD);
    const common = { brokerUrl: broker.url, board: BOARD, boardUrl: board.url, willDelaySec: 1, takeoverDelayMs: 1000, homeassistant: true };
    const ownerA = pairDaemon({ ...common, gatewayId: 'gw-a', standby: false });
    const standbyB = pairDaemon({ ...common, gatewayId: 'gw-b', standby: true });
    daemons.push(ownerA, standbyB);

    ownerA.start();
    await waitFor(() => watcher.find((m) => m.topic === STATE && m.payload === 'ready' && m.owner === 'gw-a'), { timeoutMs: 30_000, what: 'ready from gw-a' });
    standbyB.start();
    await standbyB.waitForLog(matches(/b1 is held by gateway gw-a \(epoch 1\): standing by/), 30_000);
    // gw-a's configs for the board, under the board's node_id; each gateway cleared its legacy one.
    await waitFor(() => ha!.ofDevice('tether_b1').length > 1 && ha!.ofDevice('tether_gw-a_b1').length === 0 && ha!.ofDevice('tether_gw-b_b1').length === 0, {
      timeoutMs: 20_000,
      what: "gw-a's configs for b1 and the legacy ones gone",
      detail: () => JSON.stringify([...ha!.entities.keys()]),
    });
    expect(ha.removed).toEqual(expect.arrayContaining([legacyConfig('gw-a').topic, legacyConfig('gw-b').topic]));
    const topicsA = boardEntities(ha)
      .map((e) => e.topic)
      .sort();
    expect(topicsA.every((t) => t.split('/')[2] === BOARD)).toBe(true);
    expect(ha.ofDevice('tether_b1').every((e) => e.config.device?.via_device === 'tether_gw-a')).toBe(true);

    // kill -9 of the owner: gw-b takes the board and publishes its configs.
    const mark = watcher.received.length;
    await ownerA.kill9();
    await waitFor(() => watcher.find((m) => m.topic === STATE && m.payload === 'ready' && m.owner === 'gw-b', mark), { timeoutMs: 30_000, what: 'ready from gw-b' });
    await waitFor(() => ha!.ofDevice('tether_b1').every((e) => e.config.device?.via_device === 'tether_gw-b'), {
      timeoutMs: 20_000,
      what: "gw-b's configs for b1",
      detail: () => JSON.stringify(ha!.ofDevice('tether_b1').map((e) => [e.topic, e.config.device?.via_device])),
    });

    // A Home Assistant starting now (a new subscriber to homeassistant/#) finds one set of
    // configs for the board: the same topics gw-a published, one unique_id each, one device.
    fresh = await FakeHomeAssistant.connect(broker.url);
    await waitFor(() => boardEntities(fresh!).length >= topicsA.length, { timeoutMs: 10_000, what: 'the retained configs' });
    const entities = boardEntities(fresh);
    expect(entities.map((e) => e.topic).sort()).toEqual(topicsA);
    expect(new Set(entities.map((e) => e.config.unique_id)).size).toBe(entities.length);
    expect([...new Set(entities.flatMap((e) => e.config.device?.identifiers ?? []))]).toEqual(['tether_b1']);
    expect(entities.every((e) => e.config.device?.via_device === 'tether_gw-b')).toBe(true);
    expect(fresh.invalid).toEqual([]);
    // Both gateways are devices of their own (their connectivity entity), never the board.
    expect(fresh.ofDevice('tether_gw-a')).toHaveLength(1);
    expect(fresh.ofDevice('tether_gw-b')).toHaveLength(1);

    // A gateway that had the board once and no longer has it in its config deletes its configs
    // as stale on start (an empty retained payload, as below): the owner publishes them again.
    const emptied = topicsA[0]!;
    const removedBefore = fresh.removed.length;
    await watcher.client.publishAsync(emptied, '', { qos: 1, retain: true });
    await waitFor(() => fresh!.removed.length > removedBefore && fresh!.entities.has(emptied), {
      timeoutMs: 15_000,
      what: `gw-b to publish ${emptied} again`,
      detail: () => standbyB.logs.slice(-5).map((l) => l.msg).join(' | '),
    });
    await standbyB.waitForLog(matches(/was deleted by someone else: publishing it again/), 5000);
  }, 180_000);
});
