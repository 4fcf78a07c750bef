import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedDeviceOnPty } from '../../emulator/simulator/simulated-device-on-pty.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { DeviceLink } from '../../host/link/device-link.ts';
import { KeepalivePathStore } from '../../host/mqtt/keepalive-path-store.ts';
import type { StateChange } from '../../host/session/device-session.ts';
import { toolAvailable } from '../support/find-tool.ts';
import { startMiddleboxRelay } from '../support/middlebox-relay.ts';
import { startSer2net } from '../support/ser2net.ts';
import { waitFor } from '../support/wait-for.ts';

/**
 * Issue 12, "learn each path's idle timeout ... the same for tcp:// bridges where the ping
 * interval is long": a board on a pty behind Debian's ser2net, and between tether and ser2net
 * a relay that silently forgets connections idle for FORGET_MS (its kernel still ACKs: only
 * data keeps it awake), with a device ping interval of 20 s (battery or bandwidth reasons).
 * Without learning every PING at 20 s idle goes into the void and the board is cut again and
 * again; with it: at most two cuts while learning, then none, the board `ready`, and a restart
 * starts from what was stored.
 */
const FORGET_MS = 6000;
const PING_MS = 20_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe.runIf(toolAvailable('ser2net', 'ser2net'))('a tcp:// bridge behind a path that forgets idle connections learns to keep it awake', () => {
  it(`relay forgetting after ${FORGET_MS / 1000} s, pings every ${PING_MS / 1000} s: at most two cuts while learning, then none; ready throughout after; a restart starts from the stored interval`, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-bridge-ka-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const board = await SimulatedDeviceOnPty.start();
    cleanups.push(() => board.close());
    const bridge = await startSer2net({ device: board.path });
    cleanups.push(() => bridge.stop());
    const relay = await startMiddleboxRelay({ targetPort: bridge.port, forgetIdleMs: FORGET_MS });
    cleanups.push(() => relay.close());
    const storeFile = path.join(dir, 'keepalive-paths.json');
    const target = `tcp://127.0.0.1:${relay.port}`;

    const open = (store: KeepalivePathStore, logger: RecordingLogger) => {
      const link = new DeviceLink({ target, session: { pingIntervalMs: PING_MS, misses: 3 }, keepTraffic: { store }, logger });
      const changes: Array<StateChange & { t: number }> = [];
      const started = performance.now();
      link.on('state', (c) => changes.push({ ...c, t: performance.now() - started }));
      cleanups.push(() => link.close());
      link.start();
      return { link, changes, started };
    };

    const logger = new RecordingLogger();
    const store = new KeepalivePathStore(storeFile);
    const first = open(store, logger);
    await first.link.ready(10_000);
    await waitFor(() => first.link.keepTraffic!.stats.learned && first.link.keepTraffic!.stats.timeoutMs !== null, {
      timeoutMs: 180_000,
      intervalMs: 200,
      what: 'the bridge path learned',
      detail: () => `${JSON.stringify(first.link.keepTraffic!.stats)}; states ${first.changes.map((c) => c.to).join(',')}`,
    });
    const learnedAfterMs = performance.now() - first.started;
    await first.link.ready(10_000);
    const learned = first.link.keepTraffic!.stats;
    const cutsWhileLearning = first.changes.filter((c) => c.to === 'lost').length;
    const forgottenWhileLearning = relay.forgotten;
    // One log line for the first cut, naming the observed idle age (the 20 s ping interval; a
    // loaded machine reads the last PONG late, so the age may come out a little under) and the
    // new interval.
    const cutLine = logger.records.find((r) => r.level === 'warn' && /was cut after (19|20)\.\d s idle .*traffic every \d+\.\d s from now on/.test(r.msg ?? ''));
    expect(cutLine, logger.records.map((r) => r.msg).join('\n')).toBeDefined();
    const learnedLine = logger.records.find((r) => r.level === 'info' && /learned the idle timeout of the path/.test(r.msg ?? ''));
    expect(learnedLine).toBeDefined();

    // After learning: three ping intervals, no cut, ready throughout.
    const mark = first.changes.length;
    await sleep(3 * PING_MS); // observing that nothing happens for a stated time: no condition to wait on
    const after = first.changes.slice(mark);
    console.log(
      `bridge path forgetting after ${FORGET_MS / 1000} s, pings every ${PING_MS / 1000} s: learned in ${(learnedAfterMs / 1000).toFixed(1)} s ` +
        `(${cutsWhileLearning} cuts, relay forgot ${forgottenWhileLearning}); keep-traffic every ${learned.intervalMs / 1000} s, timeout at most ${(learned.timeoutMs ?? 0) / 1000} s; ` +
        `drops ${JSON.stringify(learned.drops)}; then ${after.length} state changes in ${(3 * PING_MS) / 1000} s`,
    );
    expect(cutsWhileLearning).toBeGreaterThanOrEqual(1); // the path really does cut at 20 s
    expect(cutsWhileLearning).toBeLessThanOrEqual(2);
    expect(learned.intervalMs).toBeLessThan(FORGET_MS);
    expect(learned.intervalMs).toBeGreaterThanOrEqual(2000);
    expect(learned.drops['half-open']).toBe(cutsWhileLearning);
    expect(after).toEqual([]);
    expect(first.link.state).toBe('ready');
    expect(relay.forgotten).toBe(forgottenWhileLearning);
    await store.flushed();
    const stored = JSON.parse(readFileSync(storeFile, 'utf8'));
    expect(stored.paths[`bridge ${target}`]).toMatchObject({ intervalMs: learned.intervalMs, pingIntervalMs: PING_MS });
    await first.link.close();

    // A restart (a new link, a new store object on the same file): the stored interval at once, no cut.
    const second = open(new KeepalivePathStore(storeFile), new RecordingLogger());
    await second.link.ready(10_000);
    expect(second.link.keepTraffic!.stats.intervalMs).toBe(learned.intervalMs);
    const forgottenBefore = relay.forgotten;
    await sleep(2 * PING_MS); // as above: nothing is to happen
    expect(second.changes.map((c) => c.to)).toEqual(['ready']);
    expect(relay.forgotten).toBe(forgottenBefore);
  }, 420_000);
});
