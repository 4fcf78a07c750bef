import { afterAll, describe, expect, it } from 'vitest';
import { BoardOnTcp } from '../../emulator/avr/board-on-tcp.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import type { DaemonProcess, LogLine } from '../support/daemon-process.ts';
import { failoverBoundMs, OwnerWatcher, pairDaemon } from '../support/failover-pair.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { waitFor } from '../support/wait-for.ts';

// Issue 16, acceptance on Mosquitto with real parts: two `tether daemon` processes, one board
// (our firmware on the emulated Uno) behind a TCP bridge that serves one client at a time as
// ser2net does (BoardOnTcp), configured on both: gw-a its owner, gw-b a standby. A subscriber
// counts publishers by the owner identity every publish carries (MQTT 5 User Properties).

const BOARD = 'b1';
const SET_TOPIC = `homie/5/${BOARD}/pump/closed/set`;
const STATE = `homie/5/${BOARD}/$state`;
const WILL_DELAY_SEC = 1;
const TAKEOVER_DELAY_MS = 1000;
/**
 * The stated bound (README "More than one gateway"), from these settings:
 * (willDelaySec 1 s + up to 1 s for Mosquitto's Will timer) + takeoverDelayMs 1 s
 * + bridge and handshake 2 s + 3 s slack for a loaded 2-core CI machine = 8 s
 * (measured 2.6-3.2 s). A correctness bound, not a speed target (bench/failover.bench.ts).
 */
const FAILOVER_BOUND_MS = failoverBoundMs({ willDelaySec: WILL_DELAY_SEC, takeoverDelayMs: TAKEOVER_DELAY_MS });

const matches = (re: RegExp) => (l: LogLine) => re.test(l.msg ?? '');

describe('failover between two daemons on Mosquitto', () => {
  let broker: RunningMosquitto;
  let board: BoardOnTcp;
  let watcher: OwnerWatcher;
  const daemons: DaemonProcess[] = [];

  afterAll(async () => {
    for (const d of daemons) await d.kill9();
    await watcher?.close();
    await board?.close();
    await broker?.stop();
  });

  it('kill -9 of the owner: the standby serves within the bound, lost then ready, a /set sent meanwhile applied once; the old owner back stays standby; never two publishers', async () => {
    broker = await startMosquitto();
    board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    watcher = await OwnerWatcher.connect(broker.url, BOARD);
    const common = { brokerUrl: broker.url, board: BOARD, boardUrl: board.url, willDelaySec: WILL_DELAY_SEC, takeoverDelayMs: TAKEOVER_DELAY_MS };
    const ownerA = pairDaemon({ ...common, gatewayId: 'gw-a', standby: false });
    const standbyB = pairDaemon({ ...common, gatewayId: 'gw-b', standby: true });
    daemons.push(ownerA, standbyB);

    ownerA.start();
    await watcher.client.subscribeAsync(STATE, { qos: 1 }); // (already covered by the wildcard; keeps the retained copy coming)
    const readyA = await waitFor(() => watcher.find((m) => m.topic === STATE && m.payload === 'ready' && m.owner === 'gw-a'), { timeoutMs: 30_000, what: 'ready from gw-a' });
    expect(readyA.epoch).toBe(1);
    standbyB.start();
    await standbyB.waitForLog(matches(/b1 is held by gateway gw-a \(epoch 1\): standing by/), 30_000);
    expect(board.connections).toBe(1); // the standby never opened the bridge

    // kill -9 of the owner.
    const mark = watcher.received.length;
    const killedAt = performance.now();
    await ownerA.kill9();
    const lost = await waitFor(() => watcher.find((m) => m.topic === STATE && m.payload === 'lost', mark), { timeoutMs: 20_000, what: 'lost after the kill' });
    // No gateway holds the board now (gw-b waits TAKEOVER_DELAY_MS after the Will): a command.
    expect(standbyB.logs.some(matches(/b1: serving it/))).toBe(false);
    await watcher.publish(SET_TOPIC, 'true');
    const sentWhileFree = !standbyB.logs.some(matches(/b1: serving it/));
    expect(sentWhileFree).toBe(true);

    const readyB = await waitFor(() => watcher.find((m) => m.topic === STATE && m.payload === 'ready' && m.owner === 'gw-b', mark), {
      timeoutMs: FAILOVER_BOUND_MS,
      what: 'ready from gw-b',
      detail: () => `gw-b log: ${standbyB.logs.slice(-5).map((l) => l.msg).join(' | ')}`,
    });
    const failoverMs = readyB.at - killedAt;
    console.log(`failover (kill -9 of the owner -> ready from the standby): ${Math.round(failoverMs)} ms; lost after ${Math.round(lost.at - killedAt)} ms`);
    expect(readyB.at).toBeGreaterThan(lost.at);
    expect(readyB.epoch).toBe(2);
    expect(failoverMs).toBeLessThan(FAILOVER_BOUND_MS);

    // The command kept by the board's session (same client id on both gateways) is applied once.
    await waitFor(() => board.uno.digitalOutput(8) === true, { timeoutMs: 20_000, what: 'the relay pin high' });
    await waitFor(() => watcher.find((m) => m.topic === `homie/5/${BOARD}/pump/closed` && m.payload === 'true' && m.owner === 'gw-b', mark), { timeoutMs: 10_000, what: 'closed=true from gw-b' });

    // The old owner comes back: it sees gw-b's newer epoch held by a live gateway and stands by.
    const ownerA2 = pairDaemon({ ...common, gatewayId: 'gw-a', standby: false }, ownerA.dir);
    daemons.push(ownerA2);
    ownerA2.start();
    await ownerA2.waitForLog(matches(/b1 is held by gateway gw-b \(epoch 2\): standing by/), 30_000);
    const connectionsAfterReturn = board.connections;
    // A fixed wait on purpose: what is checked is that the returned owner does nothing (no takeover).
    await new Promise((r) => setTimeout(r, 4000));
    expect(ownerA2.logs.some(matches(/b1: serving it/))).toBe(false);
    expect(board.connections).toBe(connectionsAfterReturn);
    expect(board.clientConnected).toBe(true);
    expect(watcher.find((m) => m.topic === STATE && m.owner === 'gw-a', mark)).toBeUndefined();

    // Delivered once, by gw-b only.
    expect(standbyB.logs.filter(matches(/applying \/set/))).toHaveLength(1);
    expect([...ownerA.logs, ...ownerA2.logs].filter(matches(/applying \/set/))).toHaveLength(0);

    // Never two publishers: gw-a's run, then gw-b's, and nobody else.
    const turns = watcher.publisherTurns();
    expect(turns).toHaveLength(2);
    expect(turns[0]).toMatch(/^gw-a\//);
    expect(turns[1]).toMatch(/^gw-b\//);
  }, 180_000);
});
