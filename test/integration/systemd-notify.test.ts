import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { helperSender, SdNotify } from '../../host/systemd/sd-notify.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { has, maxGap, NotifyListener } from '../support/notify-listener.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';

// The real `tether daemon` process runs with NOTIFY_SOCKET and WATCHDOG_USEC=2 s, its
// notifications read by NotifyListener (test/support/notify-listener.ts: systemd's side, a
// python3 listener with SO_PASSCRED), against a real Mosquitto behind a TCP proxy that can
// wedge the broker leg.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sd_notify against a real unix datagram socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-sdnotify-'));

  it('unix-dgram: sent by this process itself (its pid in SCM_CREDENTIALS), no helper', async () => {
    const address = join(dir, 'notify-direct.sock');
    const listener = await NotifyListener.start(address);
    try {
      const notify = new SdNotify({ env: { NOTIFY_SOCKET: address, PATH: '/nonexistent' } });
      expect(notify.via).toBe('unix-dgram');
      notify.ready();
      notify.status('1 device: 1 ready; broker connected');
      notify.watchdog();
      await notify.idle();
      await listener.waitFor(has('WATCHDOG=1'));
      expect(listener.received.map((d) => d.text).join('\n').split('\n')).toEqual(['READY=1', 'STATUS=1 device: 1 ready; broker connected', 'WATCHDOG=1']);
      expect(listener.received.map((d) => d.pid)).toEqual(listener.received.map(() => process.pid));
    } finally {
      await listener.close();
    }
  });

  it.each([
    ['systemd-notify', join(dir, 'notify-a.sock')],
    ['socat', join(dir, 'notify-b.sock')],
    ['socat', `@tether-test-${process.pid}-abstract`],
  ] as const)('fallback helper %s to %s', async (helper, address) => {
    const listener = await NotifyListener.start(address);
    try {
      const sender = helperSender(address, { pid: process.pid, env: process.env, prefer: helper })!;
      expect(sender.via).toBe(helper);
      const notify = new SdNotify({ env: { NOTIFY_SOCKET: address }, send: sender.send });
      const started = performance.now();
      notify.ready();
      notify.status('1 device: 1 ready; broker connected');
      notify.watchdog();
      await notify.idle();
      expect(performance.now() - started).toBeLessThan(2000); // no barrier stall
      const datagrams = await listener.waitFor(has('WATCHDOG=1'));
      const all = listener.received.map((d) => d.text).join('\n').split('\n');
      expect(all).toContain('READY=1');
      expect(all).toContain('STATUS=1 device: 1 ready; broker connected');
      if (helper === 'systemd-notify') expect(all).toContain(`MAINPID=${process.pid}`);
      expect(datagrams).toBeDefined();
    } finally {
      await listener.close();
    }
  });
});

/** Stand-ins for systemd-notify and socat, first on PATH: they record each run, then run the real one. */
function recordingHelpers(dir: string): { path: string; runs: () => string[] } {
  const bin = join(dir, 'helper-bin');
  const log = join(dir, 'helper-runs.log');
  mkdirSync(bin, { recursive: true });
  for (const name of ['systemd-notify', 'socat']) {
    const real = helperPath(name);
    writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >> ${log}\n${real ? `exec ${real} "$@"` : 'exit 1'}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  return { path: `${bin}:${process.env.PATH ?? ''}`, runs: () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : []) };
}

function helperPath(name: string): string | null {
  for (const d of (process.env.PATH ?? '').split(':')) if (d && existsSync(join(d, name))) return join(d, name);
  return null;
}

describe('tether daemon under a (test) systemd: READY, WATCHDOG through a broker outage, STOPPING, all from its own pid', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-systemd-'));
  let broker: RunningMosquitto;
  let proxy: TcpProxy;
  let board: BoardOnPty;
  let listener: NotifyListener;

  beforeAll(async () => {
    broker = await startMosquitto();
    proxy = await startTcpProxy(broker.port);
    board = await BoardOnPty.start({ hexPath: FIRMWARE_HEX_PATH, ptyPath: join(dir, 'dev-a') });
    listener = await NotifyListener.start(join(dir, 'notify.sock'));
  });

  afterAll(async () => {
    await listener?.close();
    await board?.close();
    await proxy?.close();
    await broker?.stop();
  });

  it('a broker outage far past the reconnect bound is noted in STATUS while WATCHDOG=1 keeps going; no process is spawned per message', async () => {
    const helpers = recordingHelpers(dir);
    const daemon = new DaemonProcess({
      gateway: { id: 'gw' },
      broker: {
        url: `mqtt://127.0.0.1:${proxy.port}`,
        keepaliveSec: 1,
        pingRespTimeoutMs: 1000,
        backoff: { initialMs: 100, maxMs: 500 },
      },
      queue: { dir: join(dir, 'queue') },
      metrics: { port: 0 },
      devices: [{ id: 'dev-a', port: join(dir, 'dev-a'), keepalive: { intervalMs: 200, misses: 3 }, components: [{ type: 'led', id: 'status', pin: 13 }] }],
    });
    const t0 = performance.now();
    daemon.start({ env: { NOTIFY_SOCKET: listener.address, WATCHDOG_USEC: '2000000', PATH: helpers.path } });
    try {
      // Reconnect bound of the broker leg: backoff.maxMs + keepaliveSec * 1000 + pingRespTimeoutMs = 2.5 s.
      const setup = await daemon.waitForLog((l) => /^systemd: notifying/.test(l.msg ?? ''));
      expect(setup).toMatchObject({ via: 'unix-dgram', pid: daemon.pid, brokerDownBoundMs: 2500, maxLagMs: 1000 });
      const ready = await listener.waitFor(has('READY=1'));
      expect(listener.with('READY=1')).toHaveLength(1);
      await listener.waitFor((d) => /^STATUS=1 device: 1 ready; broker connected$/m.test(d.text));
      const metricsLine = await daemon.waitForLog((l) => /^Prometheus metrics at /.test(l.msg ?? ''));
      const metricsUrl = String(metricsLine.url);
      console.log(`READY=1 ${Math.round(ready.at - t0)} ms after spawn`);

      // Healthy: WATCHDOG=1 every second (WATCHDOG_USEC / 2).
      const healthyFrom = performance.now();
      await sleep(3500);
      const healthy = listener.with('WATCHDOG=1', healthyFrom);
      expect(healthy.length).toBeGreaterThanOrEqual(3);
      expect(maxGap(healthy)).toBeLessThan(1600);

      // The broker leg goes half-open (connections stay open, nothing passes), then the broker
      // dies outright: 10 s in all, four times the reconnect bound.
      const outageAt = performance.now();
      proxy.blackhole(true);
      const degraded = await daemon.waitForLog((l) => /^degraded, WATCHDOG=1 continues/.test(l.msg ?? ''), 15_000);
      expect(String(degraded.msg)).toMatch(/broker session (tether-gw|tether\.board\.dev-a) down for \d+ s \(outbox keeps messages\)/);
      await listener.waitFor((d) => /^STATUS=1 device: 1 ready; broker disconnected; broker session .* down for \d+ s \(outbox keeps messages\)/m.test(d.text), 8000, outageAt);
      await sleep(Math.max(0, outageAt + 5000 - performance.now()));
      await broker.kill9();
      await sleep(Math.max(0, outageAt + 10_000 - performance.now()));
      const during = listener.with('WATCHDOG=1', outageAt);
      console.log(`broker outage: ${during.length} WATCHDOG=1 in ${Math.round(performance.now() - outageAt)} ms, largest gap ${Math.round(maxGap(during))} ms`);
      expect(during.length).toBeGreaterThanOrEqual(8);
      expect(maxGap([listener.with('WATCHDOG=1', healthyFrom).filter((d) => d.at < outageAt).at(-1)!, ...during])).toBeLessThan(1600);
      expect(daemon.logs.filter((l) => /^unhealthy/.test(l.msg ?? ''))).toEqual([]);

      // The broker comes back and the proxy passes traffic: the sessions reconnect, the note goes.
      const healedAt = performance.now();
      await broker.restart();
      proxy.blackhole(false);
      await daemon.waitForLog((l) => /^no longer degraded/.test(l.msg ?? ''), 15_000);
      await listener.waitFor((d) => /^STATUS=1 device: 1 ready; broker connected$/m.test(d.text), 15_000, healedAt);
      console.log(`healed: broker connected again ${Math.round(performance.now() - healedAt)} ms after it came back`);
      expect(maxGap(listener.with('WATCHDOG=1', healthyFrom))).toBeLessThan(1600);

      // The half-open detection shows in the metrics.
      const text = await (await fetch(metricsUrl)).text();
      expect(Number(/^tether_broker_half_open_total\{client="tether\.board\.dev-a"\} (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
      expect(Number(/^tether_broker_reconnects_total\{client="tether\.board\.dev-a"\} (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);

      // SIGTERM: STOPPING=1, then a clean exit; READY=1 was sent exactly once.
      const stopAt = performance.now();
      expect(await daemon.stop()).toBe(0);
      await listener.waitFor(has('STOPPING=1'), 5000, stopAt);
      expect(listener.with('READY=1')).toHaveLength(1);
      await sleep(1500);
      const stopping = listener.with('STOPPING=1')[0]!;
      expect(listener.with('WATCHDOG=1', stopping.at + 100)).toEqual([]);

      // NotifyAccess=main: every datagram came from the daemon's own pid, and no helper ever ran.
      expect(new Set(listener.received.map((d) => d.pid))).toEqual(new Set([daemon.pid]));
      console.log(`${listener.received.length} datagrams, all from pid ${daemon.pid}; helper runs: ${helpers.runs().length}`);
      expect(helpers.runs()).toEqual([]);
    } catch (err) {
      console.log(daemon.logs.filter((l) => l.level >= 40 || /systemd|healthy|degraded|MQTT/.test(l.msg ?? '')).slice(-40));
      console.log(listener.received.slice(-30));
      throw err;
    } finally {
      await daemon.kill9();
    }
  });
});
