import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boardClientId } from '../../host/gateway/board-ownership.ts';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { DaemonProcess, type LogLine } from '../support/daemon-process.ts';
import { freePort } from '../support/free-port.ts';
import { startForgettingRelay, startHaproxyTcp, startNginxWebSocketProxy, toolAvailable, type Middlebox } from '../support/middleboxes.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { MqttWatcher } from '../support/mqtt-watcher.ts';

// The broker leg through real middleboxes, each started by the test in front of a real
// Mosquitto (default config, plus a websockets listener for nginx), with the real daemon and an
// idle board (a protocol-level board served over TCP). The daemon runs with its default config
// but for the broker URL; the middleboxes' idle timeouts are short (3-4 s instead of 15-20 s)
// to keep the test short. What is asserted: at most one cut per session while learning, then
// none; no `lost` seen by a subscriber after learning (none at all on MQTT 5: the will delay);
// nothing the daemon queued is lost.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Case {
  name: string;
  tool?: [binary: string, apt: string];
  start: (broker: RunningMosquitto & { wsPort: number }) => Promise<Middlebox>;
  url: (port: number) => string;
  /** The middlebox's idle timeout (ms). */
  timeoutMs: number;
  /** Daemon broker settings besides the URL (timeouts shortened where the test says why). */
  broker?: Record<string, unknown>;
}

const cases: Case[] = [
  {
    name: 'nginx, WebSocket, proxy_read_timeout 3 s',
    tool: ['nginx', 'nginx'],
    start: (b) => startNginxWebSocketProxy({ upstreamPort: b.wsPort, idleTimeoutSec: 3 }),
    url: (port) => `ws://127.0.0.1:${port}/mqtt`,
    timeoutMs: 3000,
  },
  {
    name: 'HAProxy, mode tcp, timeout client/server 3 s',
    tool: ['haproxy', 'haproxy'],
    start: (b) => startHaproxyTcp({ upstreamPort: b.port, idleTimeoutSec: 3 }),
    url: (port) => `mqtt://127.0.0.1:${port}`,
    timeoutMs: 3000,
  },
  {
    name: 'a relay that silently forgets connections idle for 4 s',
    start: (b) => startForgettingRelay({ upstreamPort: b.port, forgetAfterMs: 4000 }),
    url: (port) => `mqtt://127.0.0.1:${port}`,
    timeoutMs: 4000,
    // A silent cut is only found by an unanswered PINGREQ: with the default 30 s keepalive and
    // 5 s PINGRESP wait, the first one would take 35 s; 10 s + 2 s keep the test short.
    broker: { keepaliveSec: 10, pingRespTimeoutMs: 2000 },
  },
];

function lostLines(daemon: DaemonProcess, from = 0): LogLine[] {
  return daemon.logs.slice(from).filter((l) => l.msg === 'MQTT connection lost');
}

function perClient(lines: LogLine[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of lines) m.set(String(l.clientId), (m.get(String(l.clientId)) ?? 0) + 1);
  return m;
}

/** Payloads the daemon queued for the board's topics, from its debug log. */
function queued(daemon: DaemonProcess, prefix: string): Array<{ topic: string; payload: string }> {
  return daemon.logs
    .filter((l) => l.msg === 'queued for the broker' && String(l.topic).startsWith(prefix))
    .map((l) => ({ topic: String(l.topic), payload: String(l.payload) }));
}

for (const c of cases) {
  const run = c.tool ? toolAvailable(...c.tool) : true;
  describe.skipIf(!run)(`broker leg through ${c.name}`, () => {
    let broker: RunningMosquitto & { wsPort: number };
    let box: Middlebox;
    let board: DeviceOnTcp;
    const dir = mkdtempSync(join(tmpdir(), 'tether-middlebox-'));

    beforeAll(async () => {
      const wsPort = await freePort();
      broker = Object.assign(await startMosquitto({ websocketsPort: wsPort }), { wsPort });
      box = await c.start(broker);
      board = await serveDeviceOverTcp();
    });
    afterAll(async () => {
      await board?.close();
      await box?.stop();
      await broker?.stop();
    });

    const config = (protocolVersion: 5 | 4, queueDir: string) => ({
      gateway: { id: 'gw' },
      broker: { url: c.url(box.port), protocolVersion, ...c.broker },
      queue: { dir: queueDir },
      log: { level: 'debug' },
      devices: [{ id: 'idle-board', port: board.target }],
    });

    // MQTT 3.1.1 has no will delay: one `lost` may be seen while learning when the path closes
    // the connection (nginx, HAProxy). Through the forgetting relay (about 48 s on 3.1.1) a silent
    // cut is healed by a takeover before the broker notices, so no will either way.
    for (const protocolVersion of [5, 4] as const) {
      it(`MQTT ${protocolVersion === 5 ? '5' : '3.1.1'}: at most one cut per session while learning, then none; ${protocolVersion === 5 ? 'no lost at all (will delay)' : 'no lost after learning'}; nothing lost`, async () => {
        const queueDir = join(dir, `queue-${protocolVersion}`);
        const watcher = await MqttWatcher.connect(broker.url, 'homie/5/#', { protocolVersion });
        const daemon = new DaemonProcess(config(protocolVersion, queueDir));
        daemon.start();
        try {
          await watcher.waitFor('homie/5/idle-board/$state', 'ready', 15_000);
          await watcher.waitFor('homie/5/gw/$state', 'ready', 15_000);
          // The first cut: one warning naming the observed timeout and the new interval.
          const lowered = await daemon.waitForLog((l) => /are cut after .* idle/.test(l.msg ?? ''), c.timeoutMs + 20_000);
          expect(lowered.intervalMs as number).toBeLessThan(c.timeoutMs);
          const learned = await daemon.waitForLog((l) => /^learned the idle timeout/.test(l.msg ?? ''), 45_000);
          // The cut that completed the learning may be reported by the other session a moment
          // later (both were cut at once): the watch starts once the sessions are back.
          await sleep(1000);
          const learnedAtLog = daemon.logs.length;
          const learnedAtMsg = watcher.received.length;
          const intervalMs = learned.intervalMs as number;
          expect(intervalMs).toBeLessThan(c.timeoutMs);
          expect(intervalMs).toBeGreaterThanOrEqual(c.timeoutMs * 0.5);
          expect(learned.observedTimeoutMs as number).toBeGreaterThanOrEqual(c.timeoutMs - 300);
          // Watch: three middlebox timeouts, at least 10 s.
          await sleep(Math.max(10_000, 3 * c.timeoutMs));

          for (const [client, n] of perClient(lostLines(daemon))) expect(n, `cuts of ${client}`).toBeLessThanOrEqual(1);
          expect(lostLines(daemon, learnedAtLog), 'cuts after learning').toEqual([]);

          const lost = (from: number) => watcher.received.slice(from).filter((r) => r.topic.endsWith('/$state') && r.payload === 'lost');
          expect(lost(learnedAtMsg), 'lost seen by a subscriber after learning').toEqual([]);
          if (protocolVersion === 5) expect(lost(0), 'lost seen by a subscriber at all (MQTT 5: will delay)').toEqual([]);

          // The gateway's Homie node `broker` says what was learned.
          const expectedInterval = (intervalMs / 1000).toFixed(1);
          await watcher.waitFor('homie/5/gw/broker/ping-interval', expectedInterval, 5000);
          expect(Number(watcher.last('homie/5/gw/broker/idle-timeout'))).toBeGreaterThan(0);
          const stored = JSON.parse(readFileSync(join(queueDir, 'keepalive-paths.json'), 'utf8'));
          const entry = Object.values(stored.paths as Record<string, { intervalMs: number }>)[0]!;
          expect(entry.intervalMs).toBe(intervalMs);
          expect(Object.keys(stored.paths)[0]).toMatch(/^(mqtt|ws):\/\/127\.0\.0\.1:\d+/);

          // Nothing lost: for every topic the daemon queued for the board, the last value it
          // queued is the last one the subscriber got (the outbox coalesces a retained state
          // superseded before it was sent, e.g. `init` by `ready`), and the outbox is empty.
          await sleep(500);
          const sent = queued(daemon, 'homie/5/idle-board/');
          expect(sent.length).toBeGreaterThan(0);
          const lastQueued = new Map(sent.map((m) => [m.topic, m.payload]));
          for (const [topic, payload] of lastQueued) expect(watcher.last(topic), topic).toBe(payload);
        } catch (err) {
          console.log(daemon.logs.filter((l) => l.level >= 30).slice(-40).map((l) => JSON.stringify(l)).join('\n'));
          throw err;
        } finally {
          expect(await daemon.stop()).toBe(0);
          await watcher.close();
        }
      });
    }

    // The control for "no lost at all (will delay)": without the delay, the first cut makes the
    // broker publish that session's will at once. The daemon has two sessions on the path (the
    // gateway's and the board's) and lowers the interval for both at the first cut: often only one
    // of them is ever cut, so the `lost` looked for is that session's (waiting for the gateway's
    // alone timed out whenever the board's session was the one cut). One middlebox is enough for
    // a control: it is declared for HAProxy only (not skipped for the others).
    if (c.name.startsWith('HAProxy')) it('control: without the will delay (willDelaySec: 0) the first cut shows `lost` to a subscriber on MQTT 5', async () => {
      const watcher = await MqttWatcher.connect(broker.url, 'homie/5/#', { protocolVersion: 5 });
      const cfg = config(5, join(dir, 'queue-no-delay'));
      const daemon = new DaemonProcess({ ...cfg, broker: { ...cfg.broker, willDelaySec: 0 } });
      daemon.start();
      try {
        await watcher.waitFor('homie/5/gw/$state', 'ready', 15_000);
        await watcher.waitFor('homie/5/idle-board/$state', 'ready', 15_000);
        const cut = await daemon.waitForLog((l) => l.msg === 'MQTT connection lost', c.timeoutMs + 20_000);
        const stateTopic = cut.clientId === 'tether-gw' ? 'homie/5/gw/$state' : 'homie/5/idle-board/$state';
        expect(cut.clientId === 'tether-gw' || cut.clientId === boardClientId('idle-board'), String(cut.clientId)).toBe(true);
        await watcher.waitFor(stateTopic, 'lost', 5000);
      } finally {
        expect(await daemon.stop()).toBe(0);
        await watcher.close();
      }
    });

    it('a restart starts from what was learned: no cut at all', async () => {
      const queueDir = join(dir, 'queue-5');
      expect(existsSync(join(queueDir, 'keepalive-paths.json'))).toBe(true);
      const daemon = new DaemonProcess(config(5, queueDir));
      daemon.start();
      try {
        const restored = await daemon.waitForLog((l) => /cut idle connections after .* before/.test(l.msg ?? ''), 15_000);
        expect(restored.intervalMs as number).toBeLessThan(c.timeoutMs);
        await daemon.waitForLog((l) => l.msg === 'connected to the MQTT broker' && String(l.clientId).endsWith('idle-board'), 15_000);
        await sleep(Math.max(8000, 3 * c.timeoutMs));
        expect(lostLines(daemon)).toEqual([]);
        expect(daemon.logs.filter((l) => /are cut after/.test(l.msg ?? ''))).toEqual([]);
      } finally {
        expect(await daemon.stop()).toBe(0);
      }
    });
  });
}
