import type { GatewayDevice } from '../gateway/gateway-device.ts';
import type { DeviceLinkStats } from '../link/device-link.ts';
import type { BrokerSession, BrokerSessionStats } from '../mqtt/broker-session.ts';
import { firmataDrops } from '../tether-io/link-port.ts';
import type { EventLoopDelaySnapshot } from './event-loop-delay.ts';
import { FastHistogram } from './fast-histogram.ts';
import { labelPair, type ExpositionBuffer, type MetricFamily } from './metric-family.ts';
import { scrapeInTurns, scrapeToText, type ScrapeOptions } from './scrape-in-turns.ts';

/**
 * tether's Prometheus metrics (text format 0.0.4, written by metric-family.ts: prom-client took
 * seconds a metric at 9,900 boards).
 * Everything but the RTT histogram is read from the live stats at scrape time (each device's
 * stats once per scrape), so there is no second set of counters to drift from the first.
 *
 * Per device (label `device`):
 *   tether_device_state{state}             1 for the session's current state, 0 for the others
 *   tether_heartbeat_rtt_seconds           histogram of every PING -> PONG round trip
 *   tether_heartbeat_misses_total          PINGs not answered before the next PING went out (see below)
 *   tether_device_lost_total               transitions to `lost`
 *   tether_device_reboots_total{cause}     reboots seen, by reset cause (power-on, external, brown-out, watchdog, unknown)
 *   tether_device_asleep_seconds_total     time the board spent announced asleep (counted when each sleep ends)
 *   tether_device_write_queue_depth        Firmata writes held for a sleeping board
 *   tether_outbox_depth                    messages waiting in the durable outbox for the broker
 *   tether_outbox_bytes                    their topic + payload bytes
 *   tether_outbox_dropped_total{kind}      messages the outbox's overflow policy dropped, by kind
 *   tether_outbox_journal_damaged_records_total  journal records skipped at recovery (bad checksum, unreadable, torn)
 *   tether_outbox_journal_moved_aside_total      journals moved aside at recovery as unreadable (header damaged)
 *   tether_mqtt_set_applied_total          /set commands applied
 *   tether_mqtt_set_rejected_total         /set commands rejected (bad payload, unknown or read-only property)
 *   tether_device_wedge_recoveries_total   links closed and reopened because the session was wedged (DeviceWedgeGuard)
 *   tether_firmata_dropped_bytes_total     bytes from the board kept from firmata.js (a sysex longer than 4 KiB, or cut short)
 * Per MQTT session (label `client`, the client id; the gateway's and each board's):
 *   tether_broker_connected                1 while connected
 *   tether_broker_reconnects_total         successful connects after the first
 *   tether_broker_half_open_total          connections dropped as half-open (no PINGRESP in time)
 *   tether_broker_drops_total{cause}       connections ended without our doing: closed (by the path or the broker) or half-open
 *   tether_broker_ping_interval_seconds    the PINGREQ interval in use (learned per path, at most the keepalive)
 *   tether_broker_keepalive_bytes_total    PINGREQ/PINGRESP bytes sent and received (MQTT + WebSocket framing)
 *   tether_broker_keepalive_bytes_per_day  what an idle session spends on them a day at the current interval
 * Per tcp:// board (label `device`), the path to its bridge:
 *   tether_bridge_keep_interval_seconds     traffic on the link after this long idle (learned; the ping interval when nothing is cut)
 *   tether_bridge_path_idle_timeout_seconds the idle timeout learned for the path (upper bound; 0: none seen)
 *   tether_bridge_drops_total{cause}        links cut under a ready board: closed (by the path) or half-open
 * The daemon:
 *   tether_event_loop_delay_seconds{quantile}  event-loop delay since the previous scrape (0.5, 0.99, 1 = max)
 *   tether_process_memory_bytes{kind}      rss, heap_total, heap_used, external, array_buffers (process.memoryUsage())
 * Per broker path (label `path`, the broker URL without credentials):
 *   tether_broker_path_idle_timeout_seconds  the idle timeout learned for the path (upper bound; 0: none seen)
 *   tether_broker_path_learned             1 when nothing is left to search for (the probe connection is idle)
 *
 * Heartbeat misses: DeviceSession counts PINGs sent and PONGs matched; at most one PING is
 * normally in flight (RTT << interval). A scrape sees `pingsSent - pongs - 1` PINGs that were
 * answered neither before the next one went out nor since; the metric is the highest value seen
 * so far (a counter must not go down, and a late PONG does not undo a miss). So a board that goes
 * silent adds one per interval until it is lost (intervals x misses), and PINGs lost for good
 * (to a reboot, a reconnect) stay counted. Before a scrape sees them, several misses answered
 * late are not counted; `tether_device_lost_total` counts the verdicts exactly.
 */

export interface DeviceMetricsInput {
  id: string;
  stats(): Pick<DeviceLinkStats, 'state' | 'reboots' | 'asleepMs' | 'pingsSent' | 'pongs' | 'beats' | 'lostCount' | 'queueDepth'> & Partial<Pick<DeviceLinkStats, 'keepTraffic'>>;
  outbox: {
    readonly size: number;
    readonly bytes: number;
    readonly dropped: number;
    readonly droppedByKind: Record<string, number>;
    /** What replay found when the journal was opened (DurableOutbox.recovery). */
    readonly recovery?: { readonly corrupt: number; readonly torn: number; readonly movedAside?: string };
  };
  counters: { readonly setsApplied: number; readonly setsRejected: number; readonly wedgeRecoveries?: number };
  /** Bytes kept from firmata.js so far (FirmataSysexCap); 0 when omitted. */
  firmataDroppedBytes?(): number;
  /** Calls `listener` with each heartbeat RTT in ms; returns the unsubscribe function. */
  onRtt(listener: (ms: number) => void): () => void;
}

export interface BrokerMetricsInput {
  client: string;
  connected: boolean;
  stats: Pick<BrokerSessionStats, 'reconnects' | 'halfOpenDetections'> &
    Partial<Pick<BrokerSessionStats, 'drops' | 'pingIntervalMs' | 'keepaliveBytes' | 'keepaliveBytesPerDay'>>;
}

export interface PathMetricsInput {
  path: string;
  timeoutMs: number | null;
  learned: boolean;
}

export interface MetricsSource {
  devices(): DeviceMetricsInput[];
  brokers(): BrokerMetricsInput[];
  /** The broker path's learned idle timeout (absent: not reported). */
  paths?(): PathMetricsInput[];
  /** The event loop's delay since the previous scrape (EventLoopDelay.take(); absent: not reported). */
  eventLoopDelay?(): EventLoopDelaySnapshot;
  /** The process's memory (process.memoryUsage(); absent: not reported). */
  memoryUsage?(): NodeJS.MemoryUsage;
}

export const DEVICE_STATES = ['init', 'ready', 'sleeping', 'lost', 'disconnected'] as const;

/** Serial RTTs are milliseconds; TCP bridges and busy boards can take seconds. */
export const RTT_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface TetherMetrics {
  /** The metric families, in exposition order. */
  readonly families: ReadonlyArray<MetricFamily<Scrape>>;
  /** Writes the text exposition in chunks, in turns of the event loop (scrape-in-turns.ts). */
  scrape(write: (chunk: string) => void | Promise<void>, options?: ScrapeOptions): Promise<void>;
  /** The whole exposition as one string. */
  text(options?: ScrapeOptions): Promise<string>;
  /** Unsubscribes from the devices' RTT events. */
  close(): void;
}

/** A device as one scrape sees it: its stats read once, however many families use them. */
class DeviceRow {
  private read: ReturnType<DeviceMetricsInput['stats']> | null = null;
  constructor(
    readonly input: DeviceMetricsInput,
    /** `device="<id>"` */
    readonly label: string,
  ) {}

  stats(): ReturnType<DeviceMetricsInput['stats']> {
    return (this.read ??= this.input.stats());
  }
}

/** What one scrape reads from the source, each part read once and only if a family needs it. */
export class Scrape {
  private deviceRows: DeviceRow[] | null = null;
  private brokerRows: Array<{ input: BrokerMetricsInput; label: string }> | null = null;

  constructor(
    private readonly source: MetricsSource,
    private readonly labels: LabelCache,
  ) {}

  devices(): DeviceRow[] {
    return (this.deviceRows ??= this.source.devices().map((d) => new DeviceRow(d, this.labels.get('device', d.id))));
  }

  brokers(): Array<{ input: BrokerMetricsInput; label: string }> {
    return (this.brokerRows ??= this.source.brokers().map((b) => ({ input: b, label: this.labels.get('client', b.client) })));
  }
}

/** `device="<id>"` made once per id, not once per sample. */
class LabelCache {
  private readonly made = new Map<string, string>();
  get(name: string, value: string): string {
    const key = `${name}\0${value}`;
    let pair = this.made.get(key);
    if (pair === undefined) {
      pair = labelPair(name, value);
      this.made.set(key, pair);
    }
    return pair;
  }
}

type Type = 'counter' | 'gauge';
const stateLabels = new Map(DEVICE_STATES.map((s) => [s, labelPair('state', s)]));
/** Extra label pairs with the row's own in front: `device="a",cause="closed"`. */
const withLabel = (label: string, name: string, value: string) => `${label},${labelPair(name, value)}`;

function perDevice(name: string, type: Type, help: string, write: (d: DeviceRow, out: ExpositionBuffer, name: string) => void): MetricFamily<Scrape> {
  return {
    name,
    help,
    type,
    begin(scrape) {
      const rows = scrape.devices();
      return { rows: rows.length, write: (i, out) => write(rows[i]!, out, name) };
    },
  };
}

function perBroker(name: string, type: Type, help: string, write: (b: BrokerMetricsInput, label: string, out: ExpositionBuffer, name: string) => void): MetricFamily<Scrape> {
  return {
    name,
    help,
    type,
    begin(scrape) {
      const rows = scrape.brokers();
      return { rows: rows.length, write: (i, out) => write(rows[i]!.input, rows[i]!.label, out, name) };
    },
  };
}

/** A family of one row, read when the scrape reaches it. */
function single(name: string, type: Type, help: string, write: (out: ExpositionBuffer, name: string) => void): MetricFamily<Scrape> {
  return { name, help, type, begin: () => ({ rows: 1, write: (_i, out) => write(out, name) }) };
}

export function createTetherMetrics(source: MetricsSource): TetherMetrics {
  const families: Array<MetricFamily<Scrape>> = [];
  const labels = new LabelCache();

  // First: its window ends before this scrape's own work delays the loop.
  if (source.eventLoopDelay) {
    const take = source.eventLoopDelay;
    families.push(
      single('tether_event_loop_delay_seconds', 'gauge', 'How late the event loop turned since the previous scrape (quantile 1: the maximum)', (out, name) => {
        const d = take();
        out.sample(name, 'quantile="0.5"', d.p50Ms / 1000);
        out.sample(name, 'quantile="0.99"', d.p99Ms / 1000);
        out.sample(name, 'quantile="1"', d.maxMs / 1000);
      }),
    );
  }

  if (source.memoryUsage) {
    const read = source.memoryUsage;
    // Where the RSS goes: a daemon's RSS far above its live heap is garbage or freed Buffers
    // not yet returned (see docs/benchmarks-issue15-fleet.md).
    families.push(
      single('tether_process_memory_bytes', 'gauge', "The process's memory by kind (process.memoryUsage())", (out, name) => {
        const m = read();
        out.sample(name, 'kind="rss"', m.rss);
        out.sample(name, 'kind="heap_total"', m.heapTotal);
        out.sample(name, 'kind="heap_used"', m.heapUsed);
        out.sample(name, 'kind="external"', m.external);
        out.sample(name, 'kind="array_buffers"', m.arrayBuffers);
      }),
    );
  }

  families.push(
    perDevice('tether_device_state', 'gauge', "1 for the device session's current state, 0 for the others", (d, out, name) => {
      const state = d.stats().state;
      for (const [s, pair] of stateLabels) out.sample(name, `${d.label},${pair}`, s === state ? 1 : 0);
      if (!stateLabels.has(state as (typeof DEVICE_STATES)[number])) out.sample(name, withLabel(d.label, 'state', state), 1);
    }),
  );

  const rtt = new FastHistogram('tether_heartbeat_rtt_seconds', 'Heartbeat round trip (PING to its PONG)', RTT_BUCKETS_SECONDS);
  families.push(rtt);
  const unsubscribe: Array<() => void> = [];
  for (const d of source.devices()) {
    const observe = rtt.series({ device: d.id }); // once per PONG: nothing allocated (fast-histogram.ts)
    unsubscribe.push(d.onRtt((ms) => observe(ms / 1000)));
  }

  const missHighWater = new Map<string, number>();
  families.push(
    perDevice('tether_heartbeat_misses_total', 'counter', 'PINGs not answered before the next PING went out (high-water mark of pingsSent - pongs - 1)', (d, out, name) => {
      const s = d.stats();
      const misses = Math.max(missHighWater.get(d.input.id) ?? 0, s.pingsSent - s.pongs - 1, 0);
      missHighWater.set(d.input.id, misses);
      out.sample(name, d.label, misses);
    }),
    perDevice('tether_device_heartbeats_total', 'counter', "Heartbeats heard from the device: PONGs to the host's PINGs and BEATs it sent itself", (d, out, name) => {
      const s = d.stats();
      out.sample(name, d.label, s.pongs + s.beats);
    }),
    perDevice('tether_device_lost_total', 'counter', 'Transitions of the device session to lost', (d, out, name) => out.sample(name, d.label, d.stats().lostCount)),
    perDevice('tether_device_reboots_total', 'counter', 'Device reboots seen, by reset cause', (d, out, name) => {
      for (const [cause, n] of Object.entries(d.stats().reboots)) out.sample(name, withLabel(d.label, 'cause', cause), n);
    }),
    perDevice('tether_device_asleep_seconds_total', 'counter', 'Time the device spent announced asleep (added when each sleep ends)', (d, out, name) =>
      out.sample(name, d.label, d.stats().asleepMs / 1000),
    ),
    perDevice('tether_device_write_queue_depth', 'gauge', 'Firmata writes held for a sleeping device', (d, out, name) => out.sample(name, d.label, d.stats().queueDepth)),
    perDevice('tether_outbox_depth', 'gauge', 'Messages waiting in the durable outbox for the broker', (d, out, name) => out.sample(name, d.label, d.input.outbox.size)),
    perDevice('tether_outbox_bytes', 'gauge', 'Topic and payload bytes waiting in the durable outbox', (d, out, name) => out.sample(name, d.label, d.input.outbox.bytes)),
    perDevice('tether_outbox_dropped_total', 'counter', "Messages dropped by the outbox's overflow policy, by kind", (d, out, name) => {
      for (const [kind, n] of Object.entries(d.input.outbox.droppedByKind)) out.sample(name, withLabel(d.label, 'kind', kind), n);
    }),
    perDevice(
      'tether_outbox_journal_damaged_records_total',
      'counter',
      'Outbox journal records skipped when the journal was replayed: bad checksum, unreadable, or torn by a crash',
      (d, out, name) => {
        out.sample(name, `${d.label},damage="corrupt"`, d.input.outbox.recovery?.corrupt ?? 0);
        out.sample(name, `${d.label},damage="torn"`, d.input.outbox.recovery?.torn ?? 0);
      },
    ),
    perDevice(
      'tether_outbox_journal_moved_aside_total',
      'counter',
      'Outbox journals moved aside when opened because they were unreadable as a whole (the device started with an empty outbox)',
      (d, out, name) => out.sample(name, d.label, d.input.outbox.recovery?.movedAside ? 1 : 0),
    ),
    perDevice('tether_mqtt_set_applied_total', 'counter', 'MQTT /set commands applied', (d, out, name) => out.sample(name, d.label, d.input.counters.setsApplied)),
    perDevice('tether_mqtt_set_rejected_total', 'counter', 'MQTT /set commands rejected (bad payload, unknown or read-only property)', (d, out, name) =>
      out.sample(name, d.label, d.input.counters.setsRejected),
    ),
    perDevice('tether_device_wedge_recoveries_total', 'counter', 'Links closed and reopened because the device session was wedged', (d, out, name) =>
      out.sample(name, d.label, d.input.counters.wedgeRecoveries ?? 0),
    ),
    perDevice('tether_firmata_dropped_bytes_total', 'counter', 'Bytes from the device kept from firmata.js (a sysex over 4 KiB, or cut short)', (d, out, name) =>
      out.sample(name, d.label, d.input.firmataDroppedBytes?.() ?? 0),
    ),
    // tcp:// bridges: the path between the gateway and the bridge (BridgeKeepalive).
    perDevice(
      'tether_bridge_keep_interval_seconds',
      'gauge',
      'tcp:// bridge: traffic on the link after this long idle (learned below the path idle timeout; the ping interval when none)',
      (d, out, name) => {
        const k = d.stats().keepTraffic;
        if (k) out.sample(name, d.label, k.intervalMs / 1000);
      },
    ),
    perDevice('tether_bridge_path_idle_timeout_seconds', 'gauge', 'tcp:// bridge: the idle timeout learned for the path (upper bound; 0: none seen)', (d, out, name) => {
      const k = d.stats().keepTraffic;
      if (k) out.sample(name, d.label, (k.timeoutMs ?? 0) / 1000);
    }),
    perDevice('tether_bridge_drops_total', 'counter', 'tcp:// bridge: links cut under a ready board, by cause: closed (by the path) or half-open', (d, out, name) => {
      const k = d.stats().keepTraffic;
      if (k) for (const [cause, n] of Object.entries(k.drops)) out.sample(name, withLabel(d.label, 'cause', cause), n);
    }),
    perBroker('tether_broker_connected', 'gauge', '1 while the MQTT session is connected', (b, label, out, name) => out.sample(name, label, b.connected ? 1 : 0)),
    perBroker('tether_broker_reconnects_total', 'counter', 'Successful MQTT connects after the first', (b, label, out, name) => out.sample(name, label, b.stats.reconnects)),
    perBroker('tether_broker_half_open_total', 'counter', 'MQTT connections dropped as half-open (no PINGRESP in time)', (b, label, out, name) =>
      out.sample(name, label, b.stats.halfOpenDetections),
    ),
    perBroker('tether_broker_drops_total', 'counter', 'MQTT connections ended without our doing, by cause: closed (by the path or the broker) or half-open', (b, label, out, name) => {
      if (!b.stats.drops) return;
      out.sample(name, `${label},cause="closed"`, b.stats.drops.closed);
      out.sample(name, `${label},cause="half-open"`, b.stats.drops['half-open']);
    }),
    perBroker('tether_broker_ping_interval_seconds', 'gauge', 'PINGREQ interval in use (learned per path, at most the keepalive)', (b, label, out, name) => {
      if (b.stats.pingIntervalMs !== undefined) out.sample(name, label, b.stats.pingIntervalMs / 1000);
    }),
    perBroker('tether_broker_keepalive_bytes_total', 'counter', 'PINGREQ and PINGRESP bytes sent and received (MQTT and WebSocket framing, not TCP/IP headers)', (b, label, out, name) => {
      if (b.stats.keepaliveBytes !== undefined) out.sample(name, label, b.stats.keepaliveBytes);
    }),
    perBroker('tether_broker_keepalive_bytes_per_day', 'gauge', 'Keepalive bytes an idle session spends a day at the current PINGREQ interval', (b, label, out, name) => {
      if (b.stats.keepaliveBytesPerDay !== undefined) out.sample(name, label, b.stats.keepaliveBytesPerDay);
    }),
  );

  const perPath = (name: string, help: string, value: (p: PathMetricsInput) => number): MetricFamily<Scrape> => ({
    name,
    help,
    type: 'gauge',
    begin: () => {
      const paths = source.paths?.() ?? [];
      return { rows: paths.length, write: (i, out) => out.sample(name, labels.get('path', paths[i]!.path), value(paths[i]!)) };
    },
  });
  families.push(
    perPath('tether_broker_path_idle_timeout_seconds', 'Idle timeout learned for the broker path (an upper bound; 0: no cut seen)', (p) => (p.timeoutMs ?? 0) / 1000),
    perPath('tether_broker_path_learned', '1 when nothing is left to search for on the broker path', (p) => (p.learned ? 1 : 0)),
  );

  const scrape = (write: (chunk: string) => void | Promise<void>, options?: ScrapeOptions) => scrapeInTurns(families, new Scrape(source, labels), write, options);
  return {
    families,
    scrape,
    text: (options) => scrapeToText(families, new Scrape(source, labels), options),
    close() {
      for (const u of unsubscribe.splice(0)) u();
    },
  };
}

/** The parts of a Gateway the metrics read (structural, so tests can pass fakes). */
export interface GatewayMetricsView {
  readonly mqtt: Pick<BrokerSession, 'clientId' | 'connected' | 'stats'>;
  readonly pathKeepalive?: { readonly stats: PathMetricsInput };
  readonly devices: ReadonlyArray<Pick<GatewayDevice, 'id' | 'link' | 'outbox' | 'counters' | 'mqtt'>>;
}

export function gatewayMetricsSource(gateway: GatewayMetricsView): MetricsSource {
  return {
    devices: () =>
      gateway.devices.map((d) => ({
        id: d.id,
        stats: () => d.link.stats(),
        outbox: d.outbox,
        counters: d.counters,
        firmataDroppedBytes: () => firmataDrops(d.link).droppedBytes,
        onRtt: (listener) => d.link.onRttSample(listener),
      })),
    brokers: () => {
      const sessions = new Set<Pick<BrokerSession, 'clientId' | 'connected' | 'stats'>>([gateway.mqtt]);
      for (const d of gateway.devices) sessions.add(d.mqtt);
      return [...sessions].map((s) => ({ client: s.clientId, connected: s.connected, stats: s.stats }));
    },
    paths: () => (gateway.pathKeepalive ? [gateway.pathKeepalive.stats] : []),
  };
}
