// Benchmark: reading what the broker sends a board session at its start (issue 15). The same
// bytes (MQTT 5, as Mosquitto 2 sends them: CONNACK, SUBACK, then a 2-byte PUBACK for each of
// the board's 19 start-up publishes) through mqtt-packet's parser, which mqtt.js uses, and
// through the AckFirstParser a BrokerSession gives mqtt.js. Two ways the socket may hand them
// over: one read per packet, and the whole start in one read. Both parsers run in this process,
// interleaved in rounds; CPU is process user+system time over the round, allocation the growth
// of the V8 heap over batches during which no GC ran (performance 'gc' entries).
//
//   npx tsx bench/mqtt-ack-parse.bench.ts     TETHER_BENCH_ACK_PARSE_STARTS=20000 (per round)
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import mqttPacket, { generate, type Packet } from 'mqtt-packet';
import { AckFirstParser } from '../host/mqtt/ack-first-parser.ts';
import { percentile, printTable, type Row } from './support.ts';

const STARTS = Number(process.env.TETHER_BENCH_ACK_PARSE_STARTS ?? 20_000);
const ROUNDS = 5;
const BATCH = 200; // board starts between two heap readings

interface Parsing {
  parse(buf: Buffer): number;
  on(event: 'packet', listener: (packet: Packet) => void): unknown;
}
type Make = () => Parsing;

const makers: Record<string, Make> = {
  "mqtt-packet's parser": () => mqttPacket.parser({ protocolVersion: 5 } as never) as unknown as Parsing,
  AckFirstParser: () => new AckFirstParser({ protocolVersion: 5 }, (o) => mqttPacket.parser(o as never) as never) as unknown as Parsing,
};

/** A board's start as the broker answers it, packet by packet. */
function startPackets(): Buffer[] {
  const v5 = { protocolVersion: 5 } as never;
  return [
    generate({ cmd: 'connack', sessionPresent: true, reasonCode: 0, properties: { topicAliasMaximum: 10, receiveMaximum: 100 } } as Packet, v5),
    generate({ cmd: 'suback', messageId: 1, granted: [1, 1] } as Packet, v5),
    // Mosquitto's successful PUBACK: the message id alone (MQTT 5 §3.4.2.1).
    ...Array.from({ length: 19 }, (_, i) => Buffer.from([0x40, 0x02, 0x00, i + 2])),
  ];
}

interface Result {
  usPerPacket: number;
  bytesPerPacket: number;
}

let gcs = 0;
const observer = new PerformanceObserver((list) => (gcs += list.getEntries().length));

function measure(make: Make, reads: Buffer[], packetsPerStart: number): Result {
  let seen = 0;
  const perBatch: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let done = 0; done < STARTS; done += BATCH) {
    const gcsBefore = gcs;
    const heapBefore = process.memoryUsage().heapUsed;
    for (let b = 0; b < BATCH; b++) {
      const parser = make(); // one per connection, as mqtt.js makes one at each connect
      parser.on('packet', () => seen++);
      for (const read of reads) parser.parse(read);
    }
    const grown = process.memoryUsage().heapUsed - heapBefore;
    if (gcs === gcsBefore && grown > 0) perBatch.push(grown / (BATCH * packetsPerStart));
  }
  const cpu = process.cpuUsage(cpu0);
  if (seen !== STARTS * packetsPerStart) throw new Error(`bench: parsed ${seen} packets, expected ${STARTS * packetsPerStart}`);
  perBatch.sort((a, b) => a - b);
  return { usPerPacket: (cpu.user + cpu.system) / seen, bytesPerPacket: percentile(perBatch, 50) };
}

export async function mqttAckParse(): Promise<Row[]> {
  observer.observe({ entryTypes: ['gc'] });
  try {
    const packets = startPackets();
    const ways: Array<[string, Buffer[]]> = [
      ['one read per packet', packets],
      ['the whole start in one read', [Buffer.concat(packets)]],
    ];
    const rows: Row[] = [];
    for (const [way, reads] of ways) {
      const results: Record<string, Result[]> = {};
      for (let round = 0; round < ROUNDS; round++) {
        for (const [name, make] of Object.entries(makers)) (results[name] ??= []).push(measure(make, reads, packets.length));
        // Interleaved: a GC or a frequency change hits both alike.
        await new Promise((r) => setImmediate(r));
      }
      const median = (name: string, key: keyof Result) => percentile(results[name]!.map((r) => r[key]).sort((a, b) => a - b), 50);
      const base = "mqtt-packet's parser";
      for (const name of Object.keys(makers)) {
        const us = median(name, 'usPerPacket');
        const bytes = median(name, 'bytesPerPacket');
        rows.push({
          benchmark: `a board's start as Mosquitto answers it (CONNACK, SUBACK, 19 PUBACKs, MQTT 5), ${way}: ${name}`,
          measured: `${us.toFixed(2)} us CPU and ${bytes.toFixed(0)} bytes allocated per packet (medians of ${ROUNDS} interleaved rounds of ${STARTS} starts)`,
          limit: name === base ? '-' : base,
          ratio: name === base ? '-' : `CPU ${(us / median(base, 'usPerPacket')).toFixed(2)}x, allocation ${(bytes / median(base, 'bytesPerPacket')).toFixed(2)}x`,
        });
      }
    }
    return rows;
  } finally {
    observer.disconnect();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  printTable('reading a board session\'s incoming packets', await mqttAckParse());
}
