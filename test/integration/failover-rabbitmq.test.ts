import { afterAll, describe, expect, it } from 'vitest';
import { BoardOnTcp } from '../../emulator/avr/board-on-tcp.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import type { DaemonProcess, LogLine } from '../support/daemon-process.ts';
import { OwnerWatcher, pairDaemon } from '../support/failover-pair.ts';
import { rabbitmqInstalled, startRabbitCluster, type RabbitCluster } from '../support/rabbitmq-cluster.ts';
import { waitFor } from '../support/wait-for.ts';

// Issue 16, acceptance on a 3-node RabbitMQ 3.10 cluster (Debian's rabbitmq-server, MQTT
// plugin, quorum session queues; test/support/rabbitmq-cluster.ts): the owner on node 0, the
// standby on node 1, the subscriber on node 2. MQTT 3.1.1 (RabbitMQ 3.10 has no MQTT 5), so
// publishers are told apart by the daemons' logs and the owner record, not User Properties.
// Retained messages are kept per node here: the standby learns of the owner by asking `who`.

const BOARD = 'b1';
const SET_TOPIC = `homie/5/${BOARD}/pump/closed/set`;
const STATE = `homie/5/${BOARD}/$state`;
const TAKEOVER_DELAY_MS = 1000;
/** Will at once on 3.1.1; the takeover delay; the bridge and the handshake; slack for a shared machine. */
const FAILOVER_BOUND_MS = TAKEOVER_DELAY_MS + 20_000;
const matches = (re: RegExp) => (l: LogLine) => re.test(l.msg ?? '');

const installed = rabbitmqInstalled();
if (!installed && process.env.CI === 'true') throw new Error('rabbitmq-server is not installed: run `apt-get install rabbitmq-server`');

describe.skipIf(!installed)('failover between two daemons on a 3-node RabbitMQ cluster', () => {
  let cluster: RabbitCluster;
  let board: BoardOnTcp;
  let watcher: OwnerWatcher;
  const daemons: DaemonProcess[] = [];

  afterAll(async () => {
    for (const d of daemons) await d.kill9();
    await watcher?.close();
    await board?.close();
    await cluster?.stop();
  });

  it('kill -9 of the owner: the standby on another node serves, lost then ready on a third node, a /set sent meanwhile applied once; the old owner back stays standby', async () => {
    cluster = await startRabbitCluster({ nodes: 3 });
    board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    const [url0, url1, url2] = cluster.urls as [string, string, string];
    watcher = await OwnerWatcher.connect(url2, BOARD, 4);
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
  }, 240_000);
});
