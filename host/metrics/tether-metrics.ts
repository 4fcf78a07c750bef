import { Counter, Gauge, Registry } from 'prom-client';
import type { GatewayDevice } from '../gateway/gateway-device.ts';
import type { DeviceLinkStats } from '../link/device-link.ts';
import type { BrokerSession, BrokerSessionStats } from '../mqtt/broker-session.ts';
import { firmataDrops } from '../tether-io/link-port.ts';
import type { EventLoopDelaySnapshot } from './event-loop-delay.ts';
import { FastHistogram } from './fast-histogram.ts';

/**
 * tether's Prometheus metrics, in a Registry of their own (never prom-client's global one).
 * Everything but the RTT histogram is read from the live stats at scrape time (collect()
 * callbacks), so there is no second set of counters to drift from the first.
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
  stats(): Pick<DeviceLinkStats, 'state' | 'reboots' | 'asleepMs' | 'pingsSent' | 'pongs' | 'lostCount' | 'queueDepth'> & Partial<Pick<DeviceLinkStats, 'keepTraffic'>>;
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
  readonly registry: Registry;
  /** Unsubscribes from the devices' RTT events and empties the registry. */
  close(): void;
}

export function createTetherMetrics(source: MetricsSource): TetherMetrics {
  const registry = new Registry();
  const registers = [registry];
  const devices = source.devices();

  // First in the registry: its window ends before this scrape's own work blocks the loop.
  if (source.eventLoopDelay) {
    const take = source.eventLoopDelay;
    gauge(registers, 'tether_event_loop_delay_seconds', 'How late the event loop turned since the previous scrape (quantile 1: the maximum)', ['quantile'], (set) => {
      const d = take();
      set({ quantile: '0.5' }, d.p50Ms / 1000);
      set({ quantile: '0.99' }, d.p99Ms / 1000);
      set({ quantile: '1' }, d.maxMs / 1000);
    });
  }

  if (source.memoryUsage) {
    const read = source.memoryUsage;
    // Where the RSS goes: a daemon's RSS far above its live heap is garbage or freed Buffers
    // not yet returned (see docs/benchmarks-issue15-fleet.md).
    gauge(registers, 'tether_process_memory_bytes', 'The process\'s memory by kind (process.memoryUsage())', ['kind'], (set) => {
      const m = read();
      set({ kind: 'rss' }, m.rss);
      set({ kind: 'heap_total' }, m.heapTotal);
      set({ kind: 'heap_used' }, m.heapUsed);
      set({ kind: 'external' }, m.external);
      set({ kind: 'array_buffers' }, m.arrayBuffers);
    });
  }

  new Gauge({
    name: 'tether_device_state',
    help: "1 for the device session's current state, 0 for the others",
    labelNames: ['device', 'state'],
    registers,
    collect() {
      this.reset();
      for (const d of source.devices()) {
        const state = d.stats().state;
        for (const s of DEVICE_STATES) this.set({ device: d.id, state: s }, s === state ? 1 : 0);
        if (!(DEVICE_STATES as readonly string[]).includes(state)) this.set({ device: d.id, state }, 1);
      }
    },
  });

  const rtt = new FastHistogram('tether_heartbeat_rtt_seconds', 'Heartbeat round trip (PING to its PONG)', RTT_BUCKETS_SECONDS, registers);
  const unsubscribe: Array<() => void> = [];
  for (const d of devices) {
    const observe = rtt.series({ device: d.id }); // once per PONG: nothing allocated (fast-histogram.ts)
    unsubscribe.push(d.onRtt((ms) => observe(ms / 1000)));
  }

  const missHighWater = new Map<string, number>();
  counter(registers, 'tether_heartbeat_misses_total', 'PINGs not answered before the next PING went out (high-water mark of pingsSent - pongs - 1)', ['device'], (set) => {
    for (const d of source.devices()) {
      const s = d.stats();
      const misses = Math.max(missHighWater.get(d.id) ?? 0, s.pingsSent - s.pongs - 1, 0);
      missHighWater.set(d.id, misses);
      set({ device: d.id }, misses);
    }
  });
  counter(registers, 'tether_device_lost_total', 'Transitions of the device session to lost', ['device'], (set) => {
    for (const d of source.devices()) set({ device: d.id }, d.stats().lostCount);
  });
  counter(registers, 'tether_device_reboots_total', 'Device reboots seen, by reset cause', ['device', 'cause'], (set) => {
    for (const d of source.devices()) {
      for (const [cause, n] of Object.entries(d.stats().reboots)) set({ device: d.id, cause }, n);
    }
  });
  counter(registers, 'tether_device_asleep_seconds_total', 'Time the device spent announced asleep (added when each sleep ends)', ['device'], (set) => {
    for (const d of source.devices()) set({ device: d.id }, d.stats().asleepMs / 1000);
  });
  gauge(registers, 'tether_device_write_queue_depth', 'Firmata writes held for a sleeping device', ['device'], (set) => {
    for (const d of source.devices()) set({ device: d.id }, d.stats().queueDepth);
  });
  gauge(registers, 'tether_outbox_depth', 'Messages waiting in the durable outbox for the broker', ['device'], (set) => {
    for (const d of source.devices()) set({ device: d.id }, d.outbox.size);
  });
  gauge(registers, 'tether_outbox_bytes', 'Topic and payload bytes waiting in the durable outbox', ['device'], (set) => {
    for (const d of source.devices()) set({ device: d.id }, d.outbox.bytes);
  });
  counter(registers, 'tether_outbox_dropped_total', "Messages dropped by the outbox's overflow policy, by kind", ['device', 'kind'], (set) => {
    for (const d of source.devices()) {
      for (const [kind, n] of Object.entries(d.outbox.droppedByKind)) set({ device: d.id, kind }, n);
    }
  });
  counter(registers, 'tether_outbox_journal_damaged_records_total', 'Outbox journal records skipped when the journal was replayed: bad checksum, unreadable, or torn by a crash', ['device', 'damage'], (set) => {
    for (const d of source.devices()) {
      set({ device: d.id, damage: 'corrupt' }, d.outbox.recovery?.corrupt ?? 0);
      set({ device: d.id, damage: 'torn' }, d.outbox.recovery?.torn ?? 0);
    }
  });
  counter(registers, 'tether_outbox_journal_moved_aside_total', 'Outbox journals moved aside when opened because they were unreadable as a whole (the device started with an empty outbox)', ['device'], (set) => {
    for (const d of source.devices()) set({ device: d.id }, d.outbox.recovery?.movedAside ? 1 : 0);
  });
  counter(registers, 'tether_mqtt_set_applied_total', 'MQTT /set commands applied', ['device'], (set) => {
    for (const d of source.devices()) set({ device: d.id }, d.counters.setsApplied);
  });
  counter(registers, 'tether_mqtt_set_rejected_total', 'MQTT /set commands rejected (bad payload, unknown or read-only property)', ['device'], (set) => {
    for (const d of source.devices()) set({ device: d.id }, d.counters.setsRejected);
  });
  counter(registers, 'tether_device_wedge_recoveries_total', 'Links closed and reopened because the device session was wedged', ['device'], (set) => {
    for (const d of source.devices()) set({ device: d.id }, d.counters.wedgeRecoveries ?? 0);
  });
  counter(registers, 'tether_firmata_dropped_bytes_total', 'Bytes from the device kept from firmata.js (a sysex over 4 KiB, or cut short)', ['device'], (set) => {
    for (const d of source.devices()) set({ device: d.id }, d.firmataDroppedBytes?.() ?? 0);
  });
  // tcp:// bridges: the path between the gateway and the bridge (BridgeKeepalive).
  gauge(registers, 'tether_bridge_keep_interval_seconds', 'tcp:// bridge: traffic on the link after this long idle (learned below the path idle timeout; the ping interval when none)', ['device'], (set) => {
    for (const d of source.devices()) {
      const k = d.stats().keepTraffic;
      if (k) set({ device: d.id }, k.intervalMs / 1000);
    }
  });
  gauge(registers, 'tether_bridge_path_idle_timeout_seconds', 'tcp:// bridge: the idle timeout learned for the path (upper bound; 0: none seen)', ['device'], (set) => {
    for (const d of source.devices()) {
      const k = d.stats().keepTraffic;
      if (k) set({ device: d.id }, (k.timeoutMs ?? 0) / 1000);
    }
  });
  counter(registers, 'tether_bridge_drops_total', 'tcp:// bridge: links cut under a ready board, by cause: closed (by the path) or half-open', ['device', 'cause'], (set) => {
    for (const d of source.devices()) {
      const k = d.stats().keepTraffic;
      if (k) for (const [cause, n] of Object.entries(k.drops)) set({ device: d.id, cause }, n);
    }
  });
  gauge(registers, 'tether_broker_connected', '1 while the MQTT session is connected', ['client'], (set) => {
    for (const b of source.brokers()) set({ client: b.client }, b.connected ? 1 : 0);
  });
  counter(registers, 'tether_broker_reconnects_total', 'Successful MQTT connects after the first', ['client'], (set) => {
    for (const b of source.brokers()) set({ client: b.client }, b.stats.reconnects);
  });
  counter(registers, 'tether_broker_half_open_total', 'MQTT connections dropped as half-open (no PINGRESP in time)', ['client'], (set) => {
    for (const b of source.brokers()) set({ client: b.client }, b.stats.halfOpenDetections);
  });

  counter(registers, 'tether_broker_drops_total', 'MQTT connections ended without our doing, by cause: closed (by the path or the broker) or half-open', ['client', 'cause'], (set) => {
    for (const b of source.brokers()) {
      if (!b.stats.drops) continue;
      set({ client: b.client, cause: 'closed' }, b.stats.drops.closed);
      set({ client: b.client, cause: 'half-open' }, b.stats.drops['half-open']);
    }
  });
  gauge(registers, 'tether_broker_ping_interval_seconds', 'PINGREQ interval in use (learned per path, at most the keepalive)', ['client'], (set) => {
    for (const b of source.brokers()) if (b.stats.pingIntervalMs !== undefined) set({ client: b.client }, b.stats.pingIntervalMs / 1000);
  });
  counter(registers, 'tether_broker_keepalive_bytes_total', 'PINGREQ and PINGRESP bytes sent and received (MQTT and WebSocket framing, not TCP/IP headers)', ['client'], (set) => {
    for (const b of source.brokers()) if (b.stats.keepaliveBytes !== undefined) set({ client: b.client }, b.stats.keepaliveBytes);
  });
  gauge(registers, 'tether_broker_keepalive_bytes_per_day', 'Keepalive bytes an idle session spends a day at the current PINGREQ interval', ['client'], (set) => {
    for (const b of source.brokers()) if (b.stats.keepaliveBytesPerDay !== undefined) set({ client: b.client }, b.stats.keepaliveBytesPerDay);
  });
  gauge(registers, 'tether_broker_path_idle_timeout_seconds', 'Idle timeout learned for the broker path (an upper bound; 0: no cut seen)', ['path'], (set) => {
    for (const p of source.paths?.() ?? []) set({ path: p.path }, (p.timeoutMs ?? 0) / 1000);
  });
  gauge(registers, 'tether_broker_path_learned', '1 when nothing is left to search for on the broker path', ['path'], (set) => {
    for (const p of source.paths?.() ?? []) set({ path: p.path }, p.learned ? 1 : 0);
  });

  return {
    registry,
    close() {
      for (const u of unsubscribe.splice(0)) u();
      registry.clear();
    },
  };
}

type Labels = Record<string, string>;
type Setter = (labels: Labels, value: number) => void;

/** A counter whose value is read from elsewhere at scrape time. */
function counter(registers: Registry[], name: string, help: string, labelNames: string[], read: (set: Setter) => void): void {
  new Counter({
    name,
    help,
    labelNames,
    registers,
    collect() {
      this.reset();
      read((labels, value) => this.inc(labels, value));
    },
  });
}

function gauge(registers: Registry[], name: string, help: string, labelNames: string[], read: (set: Setter) => void): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers,
    collect() {
      this.reset();
      read((labels, value) => this.set(labels, value));
    },
  });
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
