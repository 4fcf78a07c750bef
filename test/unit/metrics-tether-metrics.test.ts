import { EventEmitter } from 'node:events';
import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import { startMetricsServer } from '../../host/metrics/metrics-server.ts';
import { createTetherMetrics, type BrokerMetricsInput, type DeviceMetricsInput, type MetricsSource } from '../../host/metrics/tether-metrics.ts';
import { activeResources, leakedSince } from '../support/handles.ts';
import { parsePrometheusText } from '../support/prometheus-scrape.ts';

function fakeDevice(id: string) {
  const rtt = new EventEmitter<{ rtt: [number] }>();
  const stats = {
    state: 'ready',
    reboots: { 'power-on': 1, external: 0, 'brown-out': 0, watchdog: 2, unknown: 0 } as Record<string, number>,
    asleepMs: 0,
    pingsSent: 0,
    pongs: 0,
    beats: 0,
    lostCount: 0,
    queueDepth: 0,
    keepTraffic: null as null | { intervalMs: number; timeoutMs: number | null; learned: boolean; drops: { closed: number; 'half-open': number } },
  };
  const outbox = { size: 0, bytes: 0, dropped: 0, droppedByKind: { telemetry: 0, state: 0, other: 0 } as Record<string, number> };
  const counters = { setsApplied: 0, setsRejected: 0 };
  const input: DeviceMetricsInput = {
    id,
    stats: () => ({ ...stats }),
    outbox,
    counters,
    onRtt: (l) => {
      rtt.on('rtt', l);
      return () => rtt.off('rtt', l);
    },
  };
  return { input, stats, outbox, counters, rtt };
}

function source() {
  const a = fakeDevice('dev-a');
  const b = fakeDevice('dev-b');
  const brokers: BrokerMetricsInput[] = [
    { client: 'tether-gw', connected: true, stats: { reconnects: 0, halfOpenDetections: 0 } },
    { client: 'tether-gw-dev-a', connected: false, stats: { reconnects: 3, halfOpenDetections: 2 } },
  ];
  const src: MetricsSource = { devices: () => [a.input, b.input], brokers: () => brokers };
  return { a, b, brokers, src };
}


describe('tether metrics', () => {
  it('reads live stats at scrape time into its own registry', async () => {
    const { a, b, brokers, src } = source();
    const metrics = createTetherMetrics(src);
    a.stats.state = 'lost';
    a.stats.lostCount = 2;
    a.stats.asleepMs = 1500;
    a.outbox.size = 7;
    a.outbox.bytes = 300;
    a.outbox.droppedByKind.telemetry = 4;
    a.counters.setsRejected = 5;
    a.counters.setsApplied = 1;
    b.stats.queueDepth = 2;
    brokers[0]!.stats.reconnects = 1;
    a.rtt.emit('rtt', 12);
    a.rtt.emit('rtt', 40);
    b.rtt.emit('rtt', 3);
    const m = parsePrometheusText(await metrics.text());
    expect(m.get('tether_device_state{device="dev-a",state="lost"}')).toBe(1);
    expect(m.get('tether_device_state{device="dev-a",state="ready"}')).toBe(0);
    expect(m.get('tether_device_state{device="dev-b",state="ready"}')).toBe(1);
    expect(m.get('tether_device_state{device="dev-b",state="sleeping"}')).toBe(0);
    expect(m.get('tether_heartbeat_rtt_seconds_count{device="dev-a"}')).toBe(2);
    expect(m.get('tether_heartbeat_rtt_seconds_sum{device="dev-a"}')).toBeCloseTo(0.052);
    expect(m.get('tether_heartbeat_rtt_seconds_bucket{le="0.025",device="dev-a"}')).toBe(1);
    expect(m.get('tether_heartbeat_rtt_seconds_count{device="dev-b"}')).toBe(1);
    expect(m.get('tether_device_lost_total{device="dev-a"}')).toBe(2);
    expect(m.get('tether_device_reboots_total{device="dev-a",cause="watchdog"}')).toBe(2);
    expect(m.get('tether_device_reboots_total{device="dev-a",cause="power-on"}')).toBe(1);
    expect(m.get('tether_device_asleep_seconds_total{device="dev-a"}')).toBe(1.5);
    expect(m.get('tether_device_write_queue_depth{device="dev-b"}')).toBe(2);
    expect(m.get('tether_outbox_depth{device="dev-a"}')).toBe(7);
    expect(m.get('tether_outbox_bytes{device="dev-a"}')).toBe(300);
    expect(m.get('tether_outbox_dropped_total{device="dev-a",kind="telemetry"}')).toBe(4);
    expect(m.get('tether_outbox_dropped_total{device="dev-a",kind="state"}')).toBe(0);
    expect(m.get('tether_mqtt_set_rejected_total{device="dev-a"}')).toBe(5);
    expect(m.get('tether_mqtt_set_applied_total{device="dev-a"}')).toBe(1);
    expect(m.get('tether_broker_connected{client="tether-gw-dev-a"}')).toBe(0);
    expect(m.get('tether_broker_reconnects_total{client="tether-gw"}')).toBe(1);
    expect(m.get('tether_broker_reconnects_total{client="tether-gw-dev-a"}')).toBe(3);
    expect(m.get('tether_broker_half_open_total{client="tether-gw-dev-a"}')).toBe(2);
    // A state that changed since is read again at the next scrape.
    a.stats.state = 'ready';
    const again = parsePrometheusText(await metrics.text());
    expect(again.get('tether_device_state{device="dev-a",state="lost"}')).toBe(0);
    expect(again.get('tether_device_state{device="dev-a",state="ready"}')).toBe(1);
    metrics.close();
    expect(a.rtt.listenerCount('rtt')).toBe(0);
    expect(b.rtt.listenerCount('rtt')).toBe(0);
  });

  it('a tcp:// board: its bridge path (keep-traffic interval, idle timeout learned, drops by cause); a serial board has none', async () => {
    const { a, src } = source();
    const metrics = createTetherMetrics(src);
    a.stats.keepTraffic = { intervalMs: 4500, timeoutMs: 6700, learned: true, drops: { closed: 0, 'half-open': 2 } };
    const m = parsePrometheusText(await metrics.text());
    expect(m.get('tether_bridge_keep_interval_seconds{device="dev-a"}')).toBe(4.5);
    expect(m.get('tether_bridge_path_idle_timeout_seconds{device="dev-a"}')).toBe(6.7);
    expect(m.get('tether_bridge_drops_total{device="dev-a",cause="half-open"}')).toBe(2);
    expect(m.get('tether_bridge_drops_total{device="dev-a",cause="closed"}')).toBe(0);
    expect(m.has('tether_bridge_keep_interval_seconds{device="dev-b"}')).toBe(false);
    metrics.close();
  });

  it('heartbeat misses: PINGs unanswered beyond the one in flight, never decreasing', async () => {
    const { a, src } = source();
    const metrics = createTetherMetrics(src);
    const misses = async () => parsePrometheusText(await metrics.text()).get('tether_heartbeat_misses_total{device="dev-a"}');
    Object.assign(a.stats, { pingsSent: 10, pongs: 9 }); // one in flight
    expect(await misses()).toBe(0);
    Object.assign(a.stats, { pingsSent: 13, pongs: 9 }); // the board went quiet
    expect(await misses()).toBe(3);
    Object.assign(a.stats, { pingsSent: 14, pongs: 13 }); // late PONGs do not undo misses
    expect(await misses()).toBe(3);
    Object.assign(a.stats, { pingsSent: 20, pongs: 15 });
    expect(await misses()).toBe(4);
    metrics.close();
  });

  it('heartbeats: PONGs and BEATs heard, per device', async () => {
    const { a, src } = source();
    const metrics = createTetherMetrics(src);
    Object.assign(a.stats, { pingsSent: 3, pongs: 3, beats: 27 });
    const m = parsePrometheusText(await metrics.text());
    expect(m.get('tether_device_heartbeats_total{device="dev-a"}')).toBe(30);
    expect(m.get('tether_device_heartbeats_total{device="dev-b"}')).toBe(0);
    metrics.close();
  });

  it('serves /metrics over HTTP, 404 elsewhere, and close() leaves no handle', async () => {
    const baseline = activeResources();
    const { src } = source();
    const server = await startMetricsServer({ port: 0, host: '127.0.0.1', source: src });
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/metrics`);
    const res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await res.text()).toMatch(/^tether_device_state\{device="dev-a",state="ready"\} 1$/m);
    // ?name=...: only the metrics named (unknown names are left out).
    const only = await (await fetch(`${server.url}?name=tether_device_lost_total&name=tether_outbox_depth&name=no_such_metric`)).text();
    expect(only).toMatch(/^tether_device_lost_total\{device="dev-a"\} 0$/m);
    expect(only).toMatch(/^tether_outbox_depth\{device="dev-b"\} 0$/m);
    expect(only).not.toMatch(/tether_device_state|no_such_metric/);
    const other = await fetch(`http://127.0.0.1:${server.port}/`);
    expect(other.status).toBe(404);
    await other.text();
    const post = await fetch(server.url, { method: 'POST' });
    expect(post.status).toBe(405);
    await post.text();
    await server.close();
    await server.close();
    await expect(fetch(server.url)).rejects.toThrow();
    expect(await leakedSince(baseline)).toEqual({});
  });

  it('a large fleet is streamed in chunks with back-pressure; a scraper that goes away mid-scrape ends it, and the next scrape is whole', async () => {
    const baseline = activeResources();
    const devices = Array.from({ length: 3000 }, (_, i) => fakeDevice(`board-${i}`));
    const src: MetricsSource = { devices: () => devices.map((d) => d.input), brokers: () => [] };
    const server = await startMetricsServer({ port: 0, source: src });
    let stats = 0;
    for (const d of devices) {
      const read = d.input.stats;
      d.input.stats = () => (stats++, read());
    }
    // A scraper that reads the first bytes and hangs up (a Prometheus scrape timeout).
    await new Promise<void>((resolve, reject) => {
      const req = request(server.url, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err) => (err.message.includes('aborted') || err.message.includes('socket hang up') ? resolve() : reject(err)));
      req.end();
    });
    const text = await (await fetch(server.url)).text();
    const m = parsePrometheusText(text);
    expect([...m.keys()].filter((k) => k.startsWith('tether_device_state{')).length).toBe(3000 * 5);
    expect(m.get('tether_heartbeat_rtt_seconds_count{device="board-2999"}')).toBe(0);
    expect(text.endsWith('\n')).toBe(true);
    // Each device's stats are read once per scrape, not once per metric.
    stats = 0;
    await (await fetch(`${server.url}?name=tether_device_state&name=tether_device_lost_total&name=tether_heartbeat_misses_total`)).text();
    expect(stats).toBe(3000);
    await server.close();
    expect(await leakedSince(baseline)).toEqual({});
  });

  it('a port in use is a clear error', async () => {
    const { src } = source();
    const first = await startMetricsServer({ port: 0, source: src });
    await expect(startMetricsServer({ port: first.port, source: src })).rejects.toThrow(/cannot serve metrics on 127\.0\.0\.1:\d+: the port is in use/);
    await first.close();
  });
});

describe('tether_event_loop_delay_seconds', () => {
  it('reports the window taken at each scrape (p50, p99, max), and is absent when the source has none', async () => {
    const windows = [
      { p50Ms: 1, p99Ms: 12.5, maxMs: 40, samples: 100 },
      { p50Ms: 2, p99Ms: 3, maxMs: 4, samples: 100 },
    ];
    let taken = 0;
    const metrics = createTetherMetrics({ devices: () => [], brokers: () => [], eventLoopDelay: () => windows[taken++]! });
    const first = await metrics.text();
    expect(first).toMatch(/^tether_event_loop_delay_seconds\{quantile="0\.99"\} 0\.0125$/m);
    expect(first).toMatch(/^tether_event_loop_delay_seconds\{quantile="1"\} 0\.04$/m);
    const second = await metrics.text();
    expect(second).toMatch(/^tether_event_loop_delay_seconds\{quantile="0\.5"\} 0\.002$/m);
    expect(second).toMatch(/^tether_event_loop_delay_seconds\{quantile="0\.99"\} 0\.003$/m);
    expect(taken).toBe(2); // one window per scrape
    metrics.close();
    const without = createTetherMetrics({ devices: () => [], brokers: () => [] });
    expect(await without.text()).not.toMatch(/tether_event_loop_delay_seconds/);
    without.close();
  });
});

describe('tether_process_memory_bytes', () => {
  it('reports each kind of process.memoryUsage() as read at the scrape, and is absent when the source has none', async () => {
    let rss = 100;
    const usage = () => ({ rss: rss++, heapTotal: 50, heapUsed: 40, external: 7, arrayBuffers: 3 });
    const metrics = createTetherMetrics({ devices: () => [], brokers: () => [], memoryUsage: usage });
    const first = await metrics.text();
    expect(first).toMatch(/^tether_process_memory_bytes\{kind="rss"\} 100$/m);
    expect(first).toMatch(/^tether_process_memory_bytes\{kind="heap_total"\} 50$/m);
    expect(first).toMatch(/^tether_process_memory_bytes\{kind="heap_used"\} 40$/m);
    expect(first).toMatch(/^tether_process_memory_bytes\{kind="external"\} 7$/m);
    expect(first).toMatch(/^tether_process_memory_bytes\{kind="array_buffers"\} 3$/m);
    expect(await metrics.text()).toMatch(/^tether_process_memory_bytes\{kind="rss"\} 101$/m);
    metrics.close();
    const without = createTetherMetrics({ devices: () => [], brokers: () => [] });
    expect(await without.text()).not.toMatch(/tether_process_memory_bytes/);
    without.close();
  });
});
