import { afterAll, describe, expect, it } from 'vitest';
import { BoardOnTcp } from '../../emulator/avr/board-on-tcp.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import type { DaemonProcess, LogLine } from '../support/daemon-process.ts';
import { failoverBoundMs, OwnerWatcher, pairDaemon } from '../support/failover-pair.ts';
import { rabbitmqInstalled, startRabbitCluster, type RabbitCluster } from '../support/rabbitmq-cluster.ts';
import { FirehoseWatcher, type TracedPublish } from '../support/rabbitmq-firehose.ts';
import { waitFor } from '../support/wait-for.ts';

// Issue 16, acceptance on a 3-node RabbitMQ 3.10 cluster (Debian's rabbitmq-server, MQTT
// plugin, quorum session queues; test/support/rabbitmq-cluster.ts): the owner on node 0, the
// standby on node 1, the subscriber on node 2. MQTT 3.1.1 (RabbitMQ 3.10 has no MQTT 5), so
// no User Properties tell publishers apart: a second subscriber reads the broker's firehose
// tracer (test/support/rabbitmq-firehose.ts), which names the connection behind every publish,
// and counts the board's publishers by connection.
// Retained messages are kept per node here: the standby learns of the owner by asking `who`.

const BOARD = 'b1';
const SET_TOPIC = `homie/5/${BOARD}/pump/closed/set`;
const STATE = `homie/5/${BOARD}/$state`;
const TAKEOVER_DELAY_MS = 1000;
/**
 * The stated bound (README "More than one gateway"), from these settings: detection (no Will
 * Delay on 3.1.1: the Will within 1 s of the kill) + takeoverDelayMs 1 s + bridge and
 * handshake 2 s + 3 s slack for a loaded 2-core CI machine = 7 s (measured 1.3-1.4 s).
 */
const FAILOVER_BOUND_MS = failoverBoundMs({ willDelaySec: 0, takeoverDelayMs: TAKEOVER_DELAY_MS });
const matches = (re: RegExp) => (l: LogLine) => re.test(l.msg ?? '');

const installed = rabbitmqInstalled();
if (!installed && process.env.CI === 'true') throw new Error('rabbitmq-server is not installed: run `apt-get install rabbitmq-server`');

describe.skipIf(!installed)('failover between two daemons on a 3-node RabbitMQ cluster', () => {
  let cluster: RabbitCluster;
  let board: BoardOnTcp;
  let watcher: OwnerWatcher;
  let firehose: FirehoseWatcher;
  const daemons: DaemonProcess[] = [];

  afterAll(async () => {
    for (const d of daemons) await d.kill9();
    await watcher?.close();
    await firehose?.close();
    await board?.close();
    await cluster?.stop();
  });

  it('kill -9 of the owner: the standby on another node serves, lost then ready on a third node, a /set sent meanwhile applied once; the old owner back stays standby', async () => {
    cluster = await startRabbitCluster({ nodes: 3 });
    board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    const [url0, url1, url2] = cluster.urls as [string, string, string];
    watcher = await OwnerWatcher.connect(url2, BOARD, 4);
    firehose = await FirehoseWatcher.start(cluster, `homie.5.${BOARD}.`, 2);
    const common = { board: BOARD, boardUrl: board.url, takeoverDelayMs: TAKEOVER_DELAY_MS, protocolVersion: 4 as const };
    const ownerA = pairDaemon({ ...common, brokerUrl: url0, gatewayId: 'gw-a', standby: false });
    const standbyB = pairDaemon({ ...common, brokerUrl: url1, gatewayId: 'gw-b', standby: true });
    daemons.push(ownerA, standbyB);

    ownerA.start();
    await ownerA.waitForLog(matches(/b1: serving it \(owner epoch 1\)/), 60_000);
    await waitFor(() => watcher.find((m) => m.topic === STATE && m.payload === 'ready'), { timeoutMs: 30_000, what: 'ready on node 2' });
    standbyB.start();
    await standbyB.waitForLog(matches(/b1 is held by gateway gw-a \(epoch 1\): standing by/), 60_000);

    const mark = watcher.received.length;
    const killedAt = performance.now();
    await ownerA.kill9();
    const lost = await waitFor(() => watcher.find((m) => m.topic === STATE && m.payload === 'lost', mark), { timeoutMs: 20_000, what: 'lost on node 2' });
    expect(standbyB.logs.some(matches(/b1: serving it/))).toBe(false);
    await watcher.publish(SET_TOPIC, 'true');
    expect(standbyB.logs.some(matches(/b1: serving it/))).toBe(false);
    const ready = await waitFor(() => watcher.find((m) => m.topic === STATE && m.payload === 'ready', mark), {
      timeoutMs: FAILOVER_BOUND_MS,
      what: 'ready on node 2 after the kill',
      detail: () => `gw-b: ${standbyB.logs.slice(-6).map((l) => l.msg).join(' | ')}`,
    });
    console.log(`RabbitMQ failover (kill -9 of the owner -> ready on node 2): ${Math.round(ready.at - killedAt)} ms; lost after ${Math.round(lost.at - killedAt)} ms`);
    expect(ready.at).toBeGreaterThan(lost.at);
    expect(ready.at - killedAt).toBeLessThan(FAILOVER_BOUND_MS);
    expect(standbyB.logs.some(matches(/b1: serving it \(owner epoch 2, taken from gateway gw-a\)/))).toBe(true);
    await waitFor(() => board.uno.digitalOutput(8) === true, { timeoutMs: 20_000, what: 'the relay pin high' });

    const ownerA2 = pairDaemon({ ...common, brokerUrl: url0, gatewayId: 'gw-a', standby: false }, ownerA.dir);
    daemons.push(ownerA2);
    ownerA2.start();
    await ownerA2.waitForLog(matches(/b1 is held by gateway gw-b \(epoch 2\): standing by/), 60_000);
    // A fixed wait on purpose: what is checked is that the returned owner does nothing.
    await new Promise((r) => setTimeout(r, 4000));
    expect(ownerA2.logs.some(matches(/b1: serving it/))).toBe(false);
    expect(standbyB.logs.some(matches(/letting it go/))).toBe(false);
    expect(board.clientConnected).toBe(true);
    expect(standbyB.logs.filter(matches(/applying \/set/))).toHaveLength(1);
    expect([...ownerA.logs, ...ownerA2.logs].filter(matches(/applying \/set/))).toHaveLength(0);

    // Never two publishers, counted by the broker: the board's topics came from gw-a's board
    // session (node 0) up to its Will, then from gw-b's (node 1) only; no two connections'
    // windows overlap, and the old owner back (node 0 again) published nothing for the board.
    const [node0, node1] = [cluster.nodes[0]!.name, cluster.nodes[1]!.name];
    const lostTraced = await waitFor(() => firehose.find((m) => m.routingKey === `homie.5.${BOARD}.$state` && m.payload === 'lost'), { timeoutMs: 10_000, what: 'lost in the firehose' });
    await waitFor(() => firehose.find((m) => m.routingKey === `homie.5.${BOARD}.$state` && m.payload === 'ready' && m.node === node1), { timeoutMs: 10_000, what: "gw-b's ready in the firehose" });
    const boardOwn = (m: TracedPublish) => !m.routingKey.endsWith('.set'); // a consumer's command is not the board's
    const windows = firehose.publisherWindows(boardOwn);
    console.log(`RabbitMQ firehose: board publishers ${windows.map((w) => `${w.node.replace(/^.*n(\d)@.*$/, 'node$1')} ${w.connection} x${w.count}`).join(', ')}`);
    expect(FirehoseWatcher.overlaps(windows)).toEqual([]);
    expect(windows[0]!.node).toBe(node0);
    expect(lostTraced.connection).toBe(windows[0]!.connection); // the broker's Will for gw-a's session
    expect(windows.length).toBeGreaterThanOrEqual(2);
    expect(windows.slice(1).every((w) => w.node === node1)).toBe(true);
  }, 240_000);
});
