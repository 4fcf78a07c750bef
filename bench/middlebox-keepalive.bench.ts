// Keepalive through real middleboxes: an idle MQTT session (BrokerSession, as the daemon runs
// one per board) in front of real Mosquitto, behind nginx (WebSocket), HAProxy (mode tcp) and a
// relay that forgets idle connections. For each: the bytes an idle session costs a day and its
// cuts a day with today's fixed PINGREQ at the 30 s keepalive, against the learned interval
// (PathKeepalive: learner + probe connection), and the time to learn the path's timeout.
// Bytes are counted by a relay in front of the middlebox (TCP payload: MQTT, WebSocket
// framing, and every reconnect's handshakes; not TCP/IP headers). The middleboxes' idle
// timeouts are short (3-4 s) to keep the run to about two minutes; the figures per day are
// extrapolated from 15 s windows.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BrokerSession } from '../host/mqtt/broker-session.ts';
import { probeIdle } from '../host/mqtt/idle-probe.ts';
import { PathKeepalive } from '../host/mqtt/path-keepalive.ts';
import { systemClock } from '../host/time/clock.ts';
import { freePort } from '../test/support/free-port.ts';
import { findTool, startCountingRelay, startForgettingRelay, startHaproxyTcp, startNginxWebSocketProxy, type Middlebox } from '../test/support/middleboxes.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { onceWithin, printTable, sleep, type Row } from './support.ts';

const WINDOW_MS = 15_000;
const DAY_MS = 86_400_000;

interface Measured {
  bytesPerDay: number;
  cutsPerDay: number;
}

async function idleSession(url: string, keepaliveSec: number, pingRespTimeoutMs: number, counted: Middlebox & { bytes: () => number }, path?: PathKeepalive): Promise<{ session: BrokerSession; measure: () => Promise<Measured> }> {
  const session = new BrokerSession({
    url,
    clientId: `bench-idle-${Math.random().toString(36).slice(2, 8)}`,
    keepaliveSec,
    pingRespTimeoutMs,
    protocolVersion: 5,
    backoff: { initialMs: 100, maxMs: 1000 },
    keepaliveTraffic: path,
  });
  session.start();
  await onceWithin(session, 'up', 30_000, 'the BrokerSession to connect through the middlebox');
  return {
    session,
    measure: async () => {
      const bytes0 = counted.bytes();
      const drops0 = session.stats.drops.closed + session.stats.drops['half-open'];
      await sleep(WINDOW_MS);
      const drops = session.stats.drops.closed + session.stats.drops['half-open'] - drops0;
      return { bytesPerDay: ((counted.bytes() - bytes0) * DAY_MS) / WINDOW_MS, cutsPerDay: (drops * DAY_MS) / WINDOW_MS };
    },
  };
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export async function middleboxKeepalive(): Promise<Row[]> {
  const wsPort = await freePort();
  const broker = await startMosquitto({ websocketsPort: wsPort, keepAllQueued: true });
  const rows: Row[] = [];
  const boxes: Array<{ name: string; start: () => Promise<Middlebox>; scheme: 'ws' | 'mqtt'; keepaliveSec: number; pingRespTimeoutMs: number }> = [];
  if (findTool('nginx')) boxes.push({ name: 'nginx WebSocket, proxy_read_timeout 3 s', start: () => startNginxWebSocketProxy({ upstreamPort: wsPort, idleTimeoutSec: 3 }), scheme: 'ws', keepaliveSec: 30, pingRespTimeoutMs: 5000 });
  if (findTool('haproxy')) boxes.push({ name: 'HAProxy tcp, timeout 3 s', start: () => startHaproxyTcp({ upstreamPort: broker.port, idleTimeoutSec: 3 }), scheme: 'mqtt', keepaliveSec: 30, pingRespTimeoutMs: 5000 });
  boxes.push({ name: 'relay forgetting after 4 s idle (keepalive 10 s)', start: () => startForgettingRelay({ upstreamPort: broker.port, forgetAfterMs: 4000 }), scheme: 'mqtt', keepaliveSec: 10, pingRespTimeoutMs: 2000 });
  try {
    for (const b of boxes) {
      const box = await b.start();
      const counter = await startCountingRelay(box.port);
      const url = b.scheme === 'ws' ? `ws://127.0.0.1:${counter.port}/mqtt` : `mqtt://127.0.0.1:${counter.port}`;
      try {
        // Today: a PINGREQ after the keepalive of silence, whatever the path does.
        const fixed = await idleSession(url, b.keepaliveSec, b.pingRespTimeoutMs, counter);
        const f = await fixed.measure();
        await fixed.session.stop();

        // Learned: the time from the start until the path's timeout is known, then a window.
        const path = new PathKeepalive({
          url,
          keepaliveMs: b.keepaliveSec * 1000,
          storeFile: join(mkdtempSync(join(tmpdir(), 'tether-bench-path-')), 'keepalive-paths.json'),
          probe: (idleMs, signal) =>
            probeIdle({ url, clientId: 'bench-probe', protocolVersion: 5, keepaliveSec: b.keepaliveSec, idleMs, pingRespTimeoutMs: b.pingRespTimeoutMs, connectTimeoutMs: 5000, clock: systemClock, signal }),
          clock: systemClock,
        });
        await path.start();
        const t0 = performance.now();
        const learned = await idleSession(url, b.keepaliveSec, b.pingRespTimeoutMs, counter, path);
        while (!(path.stats.learned && path.stats.timeoutMs !== null)) {
          if (performance.now() - t0 > 120_000) throw new Error(`${b.name}: nothing learned in 120 s`);
          await sleep(100);
        }
        const learnMs = performance.now() - t0;
        const cutsWhileLearning = learned.session.stats.drops.closed + learned.session.stats.drops['half-open'];
        await sleep(1000);
        const l = await learned.measure();
        await learned.session.stop();
        path.stop();
        await path.flushed();

        rows.push({
          benchmark: `idle session behind ${b.name}: bytes/day, cuts/day (fixed PINGREQ at ${b.keepaliveSec} s)`,
          measured: `${fmt(f.bytesPerDay)} B/day, ${fmt(f.cutsPerDay)} cuts/day`,
          limit: `learned ${(path.stats.intervalMs / 1000).toFixed(1)} s: ${fmt(l.bytesPerDay)} B/day, ${fmt(l.cutsPerDay)} cuts/day`,
          ratio: f.bytesPerDay > 0 ? `${(l.bytesPerDay / f.bytesPerDay).toFixed(2)}x bytes` : '-',
        });
        rows.push({
          benchmark: `time to learn the idle timeout behind ${b.name}`,
          measured: `${(learnMs / 1000).toFixed(1)} s (${path.stats.probes} probe tests, ${cutsWhileLearning} cut)`,
          limit: `learned ${((path.stats.timeoutMs ?? 0) / 1000).toFixed(1)} s${path.stats.exact ? '' : ' (upper bound)'}`,
          ratio: '-',
        });
      } finally {
        await counter.stop();
        await box.stop();
      }
    }
  } finally {
    await broker.stop();
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printTable('Keepalive through middleboxes', await middleboxKeepalive());
  process.exit(0);
}
