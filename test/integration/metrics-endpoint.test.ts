import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../host/config/load-config.ts';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { MetricsExtension } from '../../host/metrics/metrics-extension.ts';
import { SystemdExtension } from '../../host/systemd/systemd-extension.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { activeResources, leakedSince } from '../support/handles.ts';
import { parsePrometheusText as samples } from '../support/prometheus-scrape.ts';
import { waitFor } from '../support/wait-for.ts';

// The Prometheus endpoint of a real Gateway (in process): an emulated board on a pty, the
// embedded broker on a free loopback port, metrics on a free loopback port.

describe('metrics endpoint', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-metrics-'));
  let board: BoardOnPty | undefined;

  afterAll(async () => {
    await board?.close();
  });

  it('serves device state, heartbeat RTTs and outbox depth at /metrics, 404 elsewhere, and leaves no socket after stop', async () => {
    board = await BoardOnPty.start({ hexPath: FIRMWARE_HEX_PATH, ptyPath: join(dir, 'dev-a') });
    const config = validateConfig({
      gateway: { id: 'gw' },
      broker: { embeddedPort: 0 },
      queue: { dir: join(dir, 'queue') },
      log: { level: 'info' },
      metrics: { port: 0, host: '127.0.0.1' },
      devices: [{ id: 'dev-a', port: join(dir, 'dev-a'), keepalive: { intervalMs: 250, misses: 4 }, components: [{ type: 'led', id: 'status', pin: 13 }] }],
    });
    const baseline = activeResources();
    const log = new RecordingLogger();
    const gateway = await Gateway.start(config, log, { env: {} });
    const url = gateway.extension(MetricsExtension)!.url!;
    try {
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      expect(log.records.some((r) => r.level === 'info' && r.msg === `Prometheus metrics at ${url}` && (r.obj as { url?: string }).url === url)).toBe(true);
      expect(gateway.extension(SystemdExtension)!.watchdog).toBeNull(); // no NOTIFY_SOCKET

      let m = new Map<string, number>();
      await waitFor(
        async () => {
          m = samples(await (await fetch(url)).text());
          // The board's session connects once the gateway has claimed the board (board-ownership.ts: after the takeover delay on a fresh broker).
          return (
            m.get('tether_device_state{device="dev-a",state="ready"}') === 1 &&
            (m.get('tether_heartbeat_rtt_seconds_count{device="dev-a"}') ?? 0) >= 3 &&
            m.get('tether_broker_connected{client="tether.board.dev-a"}') === 1
          );
        },
        { timeoutMs: 20_000, intervalMs: 200, what: 'dev-a ready with 3 RTT samples and its session connected in the metrics' },
      );
      expect(m.get('tether_device_state{device="dev-a",state="ready"}')).toBe(1);
      expect(m.get('tether_device_state{device="dev-a",state="lost"}')).toBe(0);
      expect(m.get('tether_device_state{device="dev-a",state="init"}')).toBe(0);
      expect(m.get('tether_heartbeat_rtt_seconds_count{device="dev-a"}')).toBeGreaterThan(0);
      expect(m.get('tether_heartbeat_rtt_seconds_sum{device="dev-a"}')).toBeGreaterThan(0);
      expect(m.get('tether_heartbeat_rtt_seconds_bucket{le="+Inf",device="dev-a"}')).toBe(m.get('tether_heartbeat_rtt_seconds_count{device="dev-a"}'));
      expect(m.has('tether_outbox_depth{device="dev-a"}')).toBe(true);
      expect(m.get('tether_outbox_depth{device="dev-a"}')).toBeGreaterThanOrEqual(0);
      // The outbox drains and fills while a scrape is under way (facts, states): compare a scrape
      // with the depth read just before and just after it, on a scrape during which it held still.
      const outbox = gateway.devices[0]!.outbox;
      await waitFor(
        async () => {
          const before = outbox.size;
          const scraped = samples(await (await fetch(url)).text()).get('tether_outbox_depth{device="dev-a"}');
          return outbox.size === before && scraped === before;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: 'tether_outbox_depth equal to the outbox size over one scrape' },
      );
      expect(m.has('tether_device_reboots_total{device="dev-a",cause="power-on"}')).toBe(true); // first contact with a running board: no reboot counted
      expect(m.get('tether_broker_connected{client="tether-gw"}')).toBe(1);
      expect(m.get('tether_broker_connected{client="tether.board.dev-a"}')).toBe(1);
      expect(m.get('tether_broker_reconnects_total{client="tether.board.dev-a"}')).toBe(0);
      expect(m.get('tether_mqtt_set_rejected_total{device="dev-a"}')).toBe(0);
      // Late PONGs while the emulated board is busy with the Firmata handshake can count as misses.
      expect(m.get('tether_heartbeat_misses_total{device="dev-a"}')).toBeLessThanOrEqual(gateway.devices[0]!.link.stats().pingsSent);
      // (A loaded machine can slow the emulated board enough to be declared lost once.)
      expect(m.get('tether_device_lost_total{device="dev-a"}')).toBe(gateway.devices[0]!.link.stats().lostCount);

      const base = url.slice(0, -'/metrics'.length);
      for (const path of ['/', '/metric', '/metrics/x', '/favicon.ico']) {
        const res = await fetch(base + path);
        expect(res.status, path).toBe(404);
        await res.text();
      }
    } finally {
      await gateway.stop();
    }
    await expect(fetch(url)).rejects.toThrow();
    // Johnny-Five keeps timers it never clears (the CLI exits past them): compare sockets and servers only.
    const leaked = await leakedSince(baseline);
    delete leaked.Timeout;
    expect(leaked).toEqual({});
  });
});
