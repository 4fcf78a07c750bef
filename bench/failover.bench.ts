// Benchmark: failover time between two gateways (issue 16). Real Mosquitto, two `tether
// daemon` processes, one board (our firmware on the emulated Uno) behind a one-client TCP
// bridge; gw-a owns it, gw-b is a standby, both with the default willDelaySec and
// takeoverDelayMs. Measured: kill -9 of the owner -> `$state ready` published by the standby
// (seen by a subscriber through the owner identity), FAILOVER_RUNS times.
import { BoardOnTcp } from '../emulator/avr/board-on-tcp.ts';
import { configSchema } from '../host/config/config-schema.ts';
import { FIRMWARE_HEX_PATH } from '../host/paths.ts';
import { OwnerWatcher, pairDaemon } from '../test/support/failover-pair.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { percentile, sleep, type Row } from './support.ts';

const RUNS = Number(process.env.FAILOVER_RUNS ?? 3);
const BOARD = 'b1';
const STATE = `homie/5/${BOARD}/$state`;

async function until<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`failover bench: no ${what} within ${ms} ms`);
    await sleep(10);
  }
}

async function once(): Promise<{ failoverMs: number; lostMs: number }> {
  const broker = await startMosquitto();
  const board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
  const watcher = await OwnerWatcher.connect(broker.url, BOARD);
  const common = { brokerUrl: broker.url, board: BOARD, boardUrl: board.url };
  const owner = pairDaemon({ ...common, gatewayId: 'gw-a', standby: false });
  const standby = pairDaemon({ ...common, gatewayId: 'gw-b', standby: true });
  try {
    owner.start();
    await until(() => watcher.find((m) => m.topic === STATE && m.payload === 'ready' && m.owner === 'gw-a'), 60_000, 'ready from the owner');
    standby.start();
    await standby.waitForLog((l) => /standing by/.test(l.msg ?? ''), 60_000);
    const mark = watcher.received.length;
    const killed = performance.now();
    await owner.kill9();
    const lost = await until(() => watcher.find((m) => m.topic === STATE && m.payload === 'lost', mark), 60_000, 'lost');
    const ready = await until(() => watcher.find((m) => m.topic === STATE && m.payload === 'ready' && m.owner === 'gw-b', mark), 60_000, 'ready from the standby');
    return { failoverMs: ready.at - killed, lostMs: lost.at - killed };
  } finally {
    await owner.kill9();
    await standby.stop();
    await watcher.close();
    await board.close();
    await broker.stop();
  }
}

export async function failover(): Promise<Row[]> {
  const defaults = configSchema.parse({ devices: [{ id: BOARD, port: 'tcp://127.0.0.1:1' }] });
  const willDelayMs = defaults.broker.willDelaySec * 1000;
  const takeoverMs = defaults.devices[0]!.takeoverDelayMs;
  const runs: Array<{ failoverMs: number; lostMs: number }> = [];
  for (let i = 0; i < RUNS; i++) runs.push(await once());
  const failovers = runs.map((r) => r.failoverMs).sort((a, b) => a - b);
  const losts = runs.map((r) => r.lostMs).sort((a, b) => a - b);
  const floor = willDelayMs + takeoverMs;
  const p50 = percentile(failovers, 50);
  return [
    {
      benchmark: `failover: kill -9 owner -> standby ready (Mosquitto, ${RUNS} runs)`,
      measured: `median ${(p50 / 1000).toFixed(2)} s, max ${(failovers.at(-1)! / 1000).toFixed(2)} s`,
      limit: `willDelaySec ${willDelayMs / 1000} s + takeoverDelayMs ${takeoverMs / 1000} s = ${floor / 1000} s before the handshake`,
      ratio: (p50 / floor).toFixed(2),
    },
    {
      benchmark: 'failover: kill -9 owner -> `lost` seen by a subscriber',
      measured: `median ${(percentile(losts, 50) / 1000).toFixed(2)} s`,
      limit: `willDelaySec ${willDelayMs / 1000} s`,
      ratio: (percentile(losts, 50) / willDelayMs).toFixed(2),
    },
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { printTable } = await import('./support.ts');
  printTable('failover', await failover());
  process.exit(0);
}
