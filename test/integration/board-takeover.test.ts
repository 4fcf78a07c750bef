import mqtt from 'mqtt';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BoardOnTcp } from '../../emulator/avr/board-on-tcp.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { boardClientId } from '../../host/gateway/board-ownership.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { OwnerWatcher, pairDaemonConfig } from '../support/failover-pair.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { waitFor } from '../support/wait-for.ts';

// Issue 16, point 1, the holder's side: gateway gw-a HOLDS the board (behind a TCP bridge that
// serves one client at a time, as ser2net: BoardOnTcp) when gateway gw-b takes its session
// over on a real Mosquitto. gw-a must let go at once (one WARN naming gw-b, its link closed,
// nothing more published for the board), never reconnect the board's session to take it back,
// and gw-b serves the board.
//
// How gw-b comes to take a held board: gw-a's gateway session (its own TCP connection, apart
// from the board's) is cut while its board session stays up, so the broker publishes gw-a's
// Will `lost` and gw-b, a standby, takes the board after its takeover delay. This happens on a
// cluster when the node carrying gw-a's gateway session dies and the board's session is on
// another node (issue 16). Mosquitto cannot cut one of a client's two connections on its own,
// so the test publishes that Will itself: the same topic and payload the broker would
// (`homie/5/gw-a/$state` `lost`, retained, as gw-a's Will). Everything after it is real:
// gw-b's claim, its connect with the board's client id, the broker's takeover, gw-a's reaction.

const BOARD = 'b1';
const STATE = `homie/5/${BOARD}/$state`;
/** Long enough for a fight to show (gw-a's backoff is 100 ms to 2 s: a fight would be several connects). */
const OBSERVE_MS = 10_000;

/** Connects of the board's session this gateway made (the same client id on both gateways). */
function boardConnects(log: RecordingLogger): number {
  return log.records.filter((r) => r.msg === 'connected to the MQTT broker' && (r.obj as { clientId?: string }).clientId === boardClientId(BOARD)).length;
}

describe("a held board's session taken over by another gateway", () => {
  let broker: RunningMosquitto | undefined;
  let board: BoardOnTcp | undefined;
  let watcher: OwnerWatcher | undefined;
  let gateways: Gateway[] = [];

  afterEach(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    gateways = [];
    await watcher?.close();
    await board?.close();
    await broker?.stop();
  });

  it.each([5, 4] as const)('MQTT %s: the holder lets go at once, says who took it, does not fight back; the other serves', async (protocolVersion) => {
    broker = await startMosquitto();
    board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    // Publishers are told apart by MQTT 5 User Properties; a 3.1.1 gateway sends none (see the end).
    const v5 = protocolVersion === 5;
    watcher = await OwnerWatcher.connect(broker.url, BOARD, protocolVersion);
    const dir = mkdtempSync(join(tmpdir(), 'tether-takeover-'));
    const common = { brokerUrl: broker.url, board: BOARD, boardUrl: board.url, willDelaySec: 1, takeoverDelayMs: 500, protocolVersion };
    const logA = new RecordingLogger();
    const logB = new RecordingLogger();
    const a = await Gateway.start(validateConfig(pairDaemonConfig({ ...common, gatewayId: 'gw-a', standby: false, dir: join(dir, 'a') })), logA, { env: {} });
    gateways.push(a);
    await waitFor(() => a.ownership!.phase(BOARD) === 'held' && a.devices[0]!.link.state === 'ready' && a.devices[0]!.mqtt.connected, { timeoutMs: 30_000, what: 'gw-a to hold and serve the board' });
    await waitFor(() => watcher!.find((m) => m.topic === STATE && m.payload === 'ready' && (!v5 || m.owner === 'gw-a')), { timeoutMs: 10_000, what: 'ready from gw-a' });

    const b = await Gateway.start(validateConfig(pairDaemonConfig({ ...common, gatewayId: 'gw-b', standby: true, dir: join(dir, 'b') })), logB, { env: {} });
    gateways.push(b);
    await waitFor(() => b.ownership!.phase(BOARD) === 'standby', { timeoutMs: 30_000, what: 'gw-b to stand by' });
    expect(board.connections).toBe(1);
    const warnsBefore = logA.records.filter((r) => r.level === 'warn').length;
    const connectsBefore = boardConnects(logA);

    const markWill = watcher.received.length;
    const logLenAtWill = logA.records.length;
    // gw-a's gateway Will, as the broker publishes it when that session alone dies (see the top).
    const will = await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0 });
    await will.publishAsync('homie/5/gw-a/$state', 'lost', { qos: 1, retain: true });
    const willAt = performance.now();
    await will.endAsync();

    // gw-b takes the board: its board session connects with the client id gw-a's holds.
    await waitFor(() => b.ownership!.phase(BOARD) === 'held', { timeoutMs: 20_000, what: 'gw-b to claim the board', detail: () => `gw-b: ${logB.records.slice(-4).map((r) => r.msg).join(' | ')}` });
    const claimedMs = performance.now() - willAt;
    await waitFor(() => a.ownership!.phase(BOARD) === 'standby', { timeoutMs: 10_000, intervalMs: 5, what: 'gw-a to let go' });
    const letGoMs = performance.now() - willAt;
    await waitFor(() => b.devices[0]!.link.state === 'ready' && b.devices[0]!.mqtt.connected, { timeoutMs: 30_000, what: 'gw-b to serve the board' });
    const readyB = await waitFor(() => watcher!.find((m) => m.topic === STATE && m.payload === 'ready' && (!v5 || m.owner === 'gw-b'), markWill), { timeoutMs: 10_000, what: 'ready from gw-b' });
    if (v5) expect(readyB.epoch).toBe(2);
    const connectsAfterLetGo = boardConnects(logA);
    const markAfterB = watcher.received.length;

    // What is checked now is that nothing happens (gw-a does not fight back): watched for a
    // fixed time on purpose, sampling gw-a's board session so a short reconnect is seen too.
    let aSessionUp = 0;
    const sampler = setInterval(() => (aSessionUp += a.devices[0]!.mqtt.connected ? 1 : 0), 20);
    await new Promise((r) => setTimeout(r, OBSERVE_MS));
    clearInterval(sampler);
    console.log(`MQTT ${protocolVersion}: gw-a log after the Will: ${logA.records.slice(logLenAtWill).map((r) => `${r.level} ${r.msg}`).join(' | ')}`);
    expect(aSessionUp).toBe(0);

    // One WARN, naming gw-b, and no other warning from gw-a about it.
    const warnsA = logA.records.filter((r) => r.level === 'warn').slice(warnsBefore);
    console.log(`MQTT ${protocolVersion}: after the Will: gw-b held the board at ${Math.round(claimedMs)} ms, gw-a had let go by ${Math.round(letGoMs)} ms, ready from gw-b at ${Math.round(readyB.at - willAt)} ms`);
    console.log(`MQTT ${protocolVersion}: gw-a warned ${JSON.stringify(warnsA.map((r) => r.msg))}; its board connects ${connectsBefore} -> ${boardConnects(logA)}`);
    expect(warnsA).toHaveLength(1);
    expect(warnsA[0]!.msg).toMatch(/^b1: gateway gw-b took it \(epoch 2\): letting it go/);
    expect(warnsA[0]!.obj).toMatchObject({ device: BOARD, owner: 'gw-b', epoch: 2 });

    // gw-a's link is closed and stays closed; its board session stays off the broker.
    expect(a.ownership!.phase(BOARD)).toBe('standby');
    expect(a.devices[0]!.holdMode).toBe('standby');
    expect(a.devices[0]!.link.state).not.toBe('ready');
    expect(a.devices[0]!.mqtt.connected).toBe(false);
    expect(boardConnects(logA)).toBe(connectsAfterLetGo);
    expect(connectsAfterLetGo - connectsBefore).toBeLessThanOrEqual(1); // at most one reconnect before the record arrived

    // gw-b serves the board all along: one bridge client, its session connected once.
    expect(b.ownership!.phase(BOARD)).toBe('held');
    expect(b.devices[0]!.link.state).toBe('ready');
    expect(board.clientConnected).toBe(true);
    expect(board.connections).toBe(2); // gw-a's, then gw-b's
    expect(boardConnects(logB)).toBe(1);

    // Nothing more published for the board by gw-a once gw-b published: gw-a's run, then gw-b's.
    // On 3.1.1 no User Properties tell them apart: gw-a's board session, the only one it
    // publishes the board's topics through, stayed off the broker (sampled above).
    if (!v5) return;
    const turns = watcher.publisherTurns();
    expect(turns).toHaveLength(2);
    expect(turns[0]).toMatch(/^gw-a\//);
    expect(turns[1]).toMatch(/^gw-b\//);
    expect(watcher.received.slice(markAfterB).filter((m) => m.owner === 'gw-a')).toEqual([]);
  }, 120_000);

  // The limit of the above: a holder that cannot read the taker's claim (a broker node without
  // the record, as on a RabbitMQ 3.10 cluster that does not replicate retained messages while
  // the holder's gateway session was away; modelled here with a Mosquitto ACL that lets gw-a
  // write its record but never read one) sees only its board session closed: Mosquitto 2.0.11
  // sends no DISCONNECT 0x8E. It cannot know who took it, so it counts the kicks: what is
  // promised is a bounded fight (let go at the 3rd kick, then off for good) and one serving.
  it('MQTT 5, the holder blind to the claim: it lets go at the 3rd kick and stays off; the other serves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-takeover-blind-'));
    const acl = join(dir, 'acl');
    const others = ['topic readwrite homie/#', 'topic readwrite homeassistant/#', 'topic readwrite tether/gateways/#', `topic readwrite tether/boards/${BOARD}/who`];
    writeFileSync(acl, ['user gw-a', ...others, `topic write tether/boards/${BOARD}/owner`, 'user gw-b', 'topic readwrite #', 'user watcher', 'topic readwrite #', ''].join('\n'));
    broker = await startMosquitto({ users: { 'gw-a': 'pw-a', 'gw-b': 'pw-b', watcher: 'pw-w' }, extraConfig: [`acl_file ${acl}`] });
    board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    const common = { brokerUrl: broker.url, board: BOARD, boardUrl: board.url, willDelaySec: 1, takeoverDelayMs: 500, protocolVersion: 5 as const };
    const config = (gatewayId: string, standby: boolean) => {
      const raw = pairDaemonConfig({ ...common, gatewayId, standby, dir: join(dir, gatewayId) });
      return validateConfig({ ...raw, broker: { ...(raw.broker as object), username: gatewayId } });
    };
    const logA = new RecordingLogger();
    const logB = new RecordingLogger();
    const a = await Gateway.start(config('gw-a', false), logA, { env: { TETHER_BROKER_PASSWORD: 'pw-a' } });
    gateways.push(a);
    await waitFor(() => a.ownership!.phase(BOARD) === 'held' && a.devices[0]!.link.state === 'ready' && a.devices[0]!.mqtt.connected, { timeoutMs: 30_000, what: 'gw-a to hold and serve the board' });
    const b = await Gateway.start(config('gw-b', true), logB, { env: { TETHER_BROKER_PASSWORD: 'pw-b' } });
    gateways.push(b);
    await waitFor(() => b.ownership!.phase(BOARD) === 'standby', { timeoutMs: 30_000, what: 'gw-b to stand by' });
    const connectsBefore = boardConnects(logA);
    const logLenAtWill = logA.records.length;

    // gw-a's gateway Will, as at the top.
    const will = await mqtt.connectAsync(broker.url, { protocolVersion: 5, username: 'watcher', password: 'pw-w', reconnectPeriod: 0 });
    await will.publishAsync('homie/5/gw-a/$state', 'lost', { qos: 1, retain: true });
    await will.endAsync();

    await waitFor(() => a.ownership!.phase(BOARD) === 'standby', { timeoutMs: 30_000, what: 'gw-a to let go', detail: () => logA.records.slice(logLenAtWill).map((r) => r.msg).join(' | ') });
    await waitFor(() => b.ownership!.phase(BOARD) === 'held' && b.devices[0]!.link.state === 'ready' && b.devices[0]!.mqtt.connected, { timeoutMs: 30_000, what: 'gw-b to serve the board' });
    const connectsAtLetGo = boardConnects(logA);
    let aSessionUp = 0;
    const sampler = setInterval(() => (aSessionUp += a.devices[0]!.mqtt.connected ? 1 : 0), 20);
    await new Promise((r) => setTimeout(r, OBSERVE_MS)); // a fixed wait on purpose: nothing may happen
    clearInterval(sampler);

    const warnsA = logA.records.slice(logLenAtWill).filter((r) => r.level === 'warn' && /^b1: /.test(r.msg ?? ''));
    console.log(`blind holder: gw-a reconnected its board session ${connectsAtLetGo - connectsBefore} time(s) before letting go; its warnings: ${JSON.stringify(warnsA.map((r) => r.msg))}`);
    const letGo = warnsA.filter((r) => /letting it go/.test(r.msg ?? ''));
    expect(letGo).toHaveLength(1);
    expect(letGo[0]!.msg).toMatch(/^b1: its session was taken over 3 times by a client that claims no ownership: letting it go/);
    expect(connectsAtLetGo - connectsBefore).toBeLessThanOrEqual(2); // the fight is bounded: two reconnects at most
    expect(aSessionUp).toBe(0);
    expect(boardConnects(logA)).toBe(connectsAtLetGo);
    expect(a.devices[0]!.holdMode).toBe('standby');
    expect(b.ownership!.phase(BOARD)).toBe('held');
    expect(b.devices[0]!.link.state).toBe('ready');
    expect(board.clientConnected).toBe(true);
  }, 120_000);
});
