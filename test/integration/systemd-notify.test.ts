import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { helperSender, SdNotify } from '../../host/systemd/sd-notify.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';

// systemd's side of Type=notify, played by the test: a unix datagram socket in NOTIFY_SOCKET,
// read by a small python3 listener (socat would keep the fd that systemd-notify's barrier
// passes, stalling each send 5 s; python's recv() drops it, as systemd closes it). The real
// `tether daemon` process runs with NOTIFY_SOCKET and WATCHDOG_USEC=2 s against a real
// Mosquitto behind a TCP proxy that can wedge the broker leg (half-open).

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const LISTENER = `
import json, socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + addr[1:] if addr.startswith('@') else addr)
print(json.dumps({'listening': True}), flush=True)
while True:
    print(json.dumps(s.recv(65536).decode('utf-8', 'replace')), flush=True)
`;
import { waitFor } from '../support/wait-for.ts';

interface Datagram {
  at: number;
  text: string;
}

/** A NOTIFY_SOCKET listener: every datagram with its arrival time (performance.now()). */
class NotifyListener {
  readonly received: Datagram[] = [];
  private waiters: Array<{ match: (d: Datagram) => boolean; resolve: (d: Datagram) => void }> = [];
  private constructor(
    readonly address: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(address: string): Promise<NotifyListener> {
    const child = spawn(PYTHON, ['-u', '-c', LISTENER, address], { stdio: ['ignore', 'pipe', 'pipe'] });
    const listener = new NotifyListener(address, child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      child.once('exit', (code) => reject(new Error(`notify listener exited (${code}): ${stderr}`)));
      child.stdout!.on('data', (d: Buffer) => {
        buffered += d.toString();
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const value = JSON.parse(buffered.slice(0, nl)) as string | { listening: true };
          buffered = buffered.slice(nl + 1);
          if (typeof value !== 'string') {
            resolve();
            continue;
          }
          const datagram = { at: performance.now(), text: value };
          listener.received.push(datagram);
          listener.waiters = listener.waiters.filter((w) => (w.match(datagram) ? (w.resolve(datagram), false) : true));
        }
      });
    });
    return listener;
  }

  /** Datagrams carrying `assignment` (e.g. 'WATCHDOG=1'), optionally since `from`. */
  with(assignment: string, from = 0): Datagram[] {
    return this.received.filter((d) => d.at >= from && d.text.split('\n').includes(assignment));
  }

  waitFor(match: (d: Datagram) => boolean, timeoutMs = 15_000, from = 0): Promise<Datagram> {
    const seen = this.received.find((d) => d.at >= from && match(d));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching datagram within ${timeoutMs} ms; got ${JSON.stringify(this.received.slice(-5))}`)), timeoutMs);
      this.waiters.push({
        match: (d) => d.at >= from && match(d),
        resolve: (d) => {
          clearTimeout(timer);
          resolve(d);
        },
      });
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.kill('SIGTERM');
    });
  }
}

const has = (assignment: string) => (d: Datagram) => d.text.split('\n').includes(assignment);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Largest gap between consecutive arrivals (ms). */
function maxGap(ds: Datagram[]): number {
  let gap = 0;
  for (let i = 1; i < ds.length; i++) gap = Math.max(gap, ds[i]!.at - ds[i - 1]!.at);
  return gap;
}

describe('sd_notify helpers against a real unix datagram socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-sdnotify-'));

  it.each([
    ['systemd-notify', join(dir, 'notify-a.sock')],
    ['socat', join(dir, 'notify-b.sock')],
    ['socat', `@tether-test-${process.pid}-abstract`],
  ] as const)('%s to %s', async (helper, address) => {
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

describe('tether daemon under a (test) systemd: READY, WATCHDOG only while healthy, STOPPING', () => {
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

  it('WATCHDOG=1 stops while the broker leg is wedged past its bound and resumes after the reconnect', async () => {
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
    daemon.start({ env: { NOTIFY_SOCKET: listener.address, WATCHDOG_USEC: '2000000' } });
    try {
      // Bound of the broker leg: backoff.maxMs + keepaliveSec * 1000 + pingRespTimeoutMs = 2.5 s.
      const setup = await daemon.waitForLog((l) => /^systemd: notifying/.test(l.msg ?? ''));
      expect(setup).toMatchObject({ via: 'systemd-notify', brokerDownBoundMs: 2500, maxLagMs: 1000 });
      const ready = await listener.waitFor(has('READY=1'));
      expect(listener.with('READY=1')).toHaveLength(1);
      await listener.waitFor((d) => /^STATUS=1 device: 1 ready; broker connected$/m.test(d.text));
      const metricsLine = await daemon.waitForLog((l) => /^Prometheus metrics at /.test(l.msg ?? ''));
      const metricsUrl = String(metricsLine.url);
      console.log(`READY=1 ${Math.round(ready.at - t0)} ms after spawn`);

      // Healthy: WATCHDOG=1 every second (WATCHDOG_USEC / 2).
      const healthyFrom = performance.now();
      await waitFor(() => listener.with('WATCHDOG=1', healthyFrom).length >= 3, { timeoutMs: 3500, what: '3 WATCHDOG=1 while healthy' });
      const healthy = listener.with('WATCHDOG=1', healthyFrom);
      expect(healthy.length).toBeGreaterThanOrEqual(3);
      expect(maxGap(healthy)).toBeLessThan(1600);

      // Wedge the broker leg: connections stay open but nothing passes (half-open).
      const wedgedAt = performance.now();
      proxy.blackhole(true);
      const unhealthyLog = await daemon.waitForLog((l) => /^unhealthy: withholding WATCHDOG=1/.test(l.msg ?? ''), 15_000);
      const unhealthyAt = performance.now();
      expect(String(unhealthyLog.msg)).toMatch(/broker session tether-gw(-dev-a)? down for \d+ s > 2\.5 s/);
      const lastBefore = listener.with('WATCHDOG=1', wedgedAt).at(-1);
      console.log(
        `wedged: unhealthy after ${Math.round(unhealthyAt - wedgedAt)} ms, last WATCHDOG=1 ${lastBefore ? Math.round(lastBefore.at - wedgedAt) : '-'} ms after the wedge`,
      );
      // Half-open detection (keepalive + PINGRESP timeout, 2 s) plus the 2.5 s bound, sampled.
      expect(unhealthyAt - wedgedAt).toBeGreaterThan(3500);
      expect(unhealthyAt - wedgedAt).toBeLessThan(9000);
      await listener.waitFor((d) => /UNHEALTHY: broker session/.test(d.text), 5000, wedgedAt);
      // A clear window: no WATCHDOG=1 at all for 4 s (two watchdog periods of 2 s).
      await sleep(4000); // a fixed wait on purpose: the window that must stay clear
      const during = listener.with('WATCHDOG=1', unhealthyAt + 200);
      expect(during).toEqual([]);

      // The broker leg passes traffic again: the sessions reconnect and WATCHDOG=1 resumes.
      const healedAt = performance.now();
      proxy.blackhole(false);
      await daemon.waitForLog((l) => /^healthy again: WATCHDOG=1 resumes/.test(l.msg ?? ''), 15_000);
      const resumed = await listener.waitFor(has('WATCHDOG=1'), 10_000, healedAt);
      console.log(`healed: WATCHDOG=1 again ${Math.round(resumed.at - healedAt)} ms after the proxy passed traffic`);
      await listener.waitFor((d) => /^STATUS=1 device: 1 ready; broker connected$/m.test(d.text), 10_000, healedAt);
      await waitFor(() => listener.with('WATCHDOG=1', resumed.at).length >= 3, { timeoutMs: 2500, what: '3 WATCHDOG=1 after healing' });
      const after = listener.with('WATCHDOG=1', resumed.at);
      expect(after.length).toBeGreaterThanOrEqual(3);
      expect(maxGap(after)).toBeLessThan(1600);

      // The half-open detections show in the metrics.
      const text = await (await fetch(metricsUrl)).text();
      expect(Number(/^tether_broker_half_open_total\{client="tether-gw-dev-a"\} (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
      expect(Number(/^tether_broker_reconnects_total\{client="tether-gw-dev-a"\} (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);

      // SIGTERM: STOPPING=1, then a clean exit; READY=1 was sent exactly once.
      const stopAt = performance.now();
      expect(await daemon.stop()).toBe(0);
      await listener.waitFor(has('STOPPING=1'), 5000, stopAt);
      expect(listener.with('READY=1')).toHaveLength(1);
      await sleep(1500); // a fixed wait on purpose: time for a (wrong) late WATCHDOG=1 to arrive
      const stopping = listener.with('STOPPING=1')[0]!;
      expect(listener.with('WATCHDOG=1', stopping.at + 100)).toEqual([]);
    } catch (err) {
      console.log(daemon.logs.filter((l) => l.level >= 40 || /systemd|healthy|MQTT/.test(l.msg ?? '')).slice(-40));
      console.log(listener.received.slice(-30));
      throw err;
    } finally {
      await daemon.kill9();
    }
  });
});
