// `npm run bench`: every benchmark, one table. Numbers depend on the machine: the README
// carries the latest table with its date and machine.
import os from 'node:os';
import { bridgeHeal } from './bridge-heal.bench.ts';
import { brokerFailover } from './broker-failover.bench.ts';
import { brokerLeg } from './broker-leg.bench.ts';
import { cliStartup } from './cli-startup.bench.ts';
import { detectionLatency } from './detection-latency.bench.ts';
import { failover } from './failover.bench.ts';
import { fleetScale } from './fleet-scale.bench.ts';
import { middleboxKeepalive } from './middlebox-keepalive.bench.ts';
import { mqttAckParse } from './mqtt-ack-parse.bench.ts';
import { mqttSessionHeap } from './mqtt-session-heap.bench.ts';
import { outboxJournal } from './outbox-journal.bench.ts';
import { serialRtt } from './serial-rtt.bench.ts';
import { serialThroughput } from './serial-throughput.bench.ts';
import { socketFloor } from './socket-floor.bench.ts';
import { printTable, type Row } from './support.ts';

const started = Date.now();
const rows: Row[] = [];
for (const [name, bench] of [
  ['CLI startup', cliStartup],
  ['serial RTT', serialRtt],
  ['serial throughput', serialThroughput],
  ['detection latency', detectionLatency],
  ['broker leg', brokerLeg],
  ['bridge heal', bridgeHeal],
  ['outbox journal', outboxJournal],
  ['MQTT side of a board', mqttSessionHeap],
  ['reading PUBACKs', mqttAckParse],
  ['keepalive through middleboxes', middleboxKeepalive],
  ['socket floor', socketFloor],
  ['fleet scale', fleetScale],
  ['broker failover', brokerFailover],
  ['failover', failover],
] as const) {
  process.stderr.write(`running ${name}...\n`);
  rows.push(...(await bench()));
}
printTable(
  `tether benchmarks, ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version} (${Math.round((Date.now() - started) / 1000)} s)`,
  rows,
);
process.exit(0);
