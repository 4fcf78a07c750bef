import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../support/wait-for.ts';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { MetricsExtension } from '../../host/metrics/metrics-extension.ts';
import { has, maxGap, NotifyListener } from '../support/notify-listener.ts';

// A wedged device session is recovered on its own (its link closed and reopened, counted and
// logged) while WATCHDOG=1 keeps going: the gateway in process with its real parts (a
// protocol-level board behind a loopback TCP bridge, the embedded broker, the systemd
// extension sending to a python3 listener that plays systemd, the metrics endpoint). The
// wedge is injected into the session: it stops hearing the board and its deadline timer is
// lost, so it stays `ready` although the board no longer reaches it (the kind of bug the
// guard is there for: the session broke its promise to declare the board lost in time).

type SessionInternals = { receive: (m: unknown) => void; receivePong: (seq: number, bootId: number) => void; receiveBeat: (bootId: number) => void; checkDeadline: () => void; clearDeadline: () => void };

describe('a wedged device session under a (test) systemd', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-wedge-'));
  let board: DeviceOnTcp;
  let listener: NotifyListener;

  beforeAll(async () => {
    board = await serveDeviceOverTcp();
    listener = await NotifyListener.start(join(dir, 'notify.sock'));
  });

  afterAll(async () => {
    await listener?.close();
    await board?.close();
  });

  it('is recovered alone (link closed and reopened, counted, logged), and WATCHDOG=1 never stops', async () => {
    const config = validateConfig({
      gateway: { id: 'gw' },
      broker: { embeddedPort: 0 },
      queue: { dir: join(dir, 'queue') },
      metrics: { port: 0 },
      // beats: false: with BEATs the injected wedge below would still be caught by the session
      // itself (its BEATS renewals going unanswered); this test is about the guard behind it.
      devices: [{ id: 'dev-a', port: board.target, keepalive: { intervalMs: 200, misses: 3, handshakeTimeoutMs: 1500, beats: false } }],
    });
    const log = new RecordingLogger();
    const gateway = new Gateway(config, log, {
      env: { NOTIFY_SOCKET: listener.address, WATCHDOG_USEC: '2000000' },
      wedgeGuard: { wedgeGraceMs: 2000, sampleMs: 500 }, // shorter than the defaults (10 s, 2 s): the test is about the recovery, not the bound
    });
    await gateway.start();
    const device = gateway.devices[0]!;
    const msgs = () => log.records.map((r) => r.msg ?? '');
    try {
      await eventually(() => expect(device.link.state).toBe('ready'), { timeoutMs: 10_000, intervalMs: 50 });
      const from = performance.now();

      // The wedge: the session hears nothing more and its lost deadline never fires.
      const session = device.link.session as unknown as SessionInternals;
      const { checkDeadline } = session;
      session.receive = () => {};
      session.receivePong = () => {}; // the link's fast path for PONGs
      session.receiveBeat = () => {}; // and for BEATs (the simulated board sends its own heartbeat)
      session.checkDeadline = () => {};
      session.clearDeadline();
      const wedgedAt = performance.now();

      // Past its lost deadline (600 ms) + the grace (2 s): reopened, counted, logged.
      await eventually(() => expect(msgs().some((m) => /^device dev-a wedged in ready \(\d+ s past its lost bound\): closing and reopening its link \(recovery 1\)$/.test(m))).toBe(true), {
        timeoutMs: 10_000,
        intervalMs: 50,
      });
      const recoveredAt = performance.now();
      console.log(`wedged session recovered ${Math.round(recoveredAt - wedgedAt)} ms after the wedge`);
      await eventually(() => expect(msgs()).toContain('device dev-a: link reopened'), { timeoutMs: 5000, intervalMs: 50 });
      expect(device.counters.wedgeRecoveries).toBe(1);


      // The fault goes away: the next handshake completes and the device is ready again.
      delete (session as Partial<SessionInternals>).receive; // the prototype's
      delete (session as Partial<SessionInternals>).receivePong;
      delete (session as Partial<SessionInternals>).receiveBeat;
      session.checkDeadline = checkDeadline;
      await eventually(() => expect(device.link.state).toBe('ready'), { timeoutMs: 15_000, intervalMs: 50 });
      const recoveries = device.counters.wedgeRecoveries;

      const metrics = gateway.extension(MetricsExtension)!.url!;
      const text = await (await fetch(metrics)).text();
      expect(text).toMatch(new RegExp(`^tether_device_wedge_recoveries_total\\{device="dev-a"\\} ${recoveries}$`, 'm'));

      // systemd saw WATCHDOG=1 every second throughout, from this process, and nothing unhealthy.
      const pings = listener.with('WATCHDOG=1', from);
      console.log(`${recoveries} recoveries; ${pings.length} WATCHDOG=1 over ${Math.round(performance.now() - from)} ms, largest gap ${Math.round(maxGap(pings))} ms`);
      expect(maxGap(pings)).toBeLessThan(1600);
      expect(performance.now() - (pings.at(-1)?.at ?? 0)).toBeLessThan(1600);
      expect(msgs().filter((m) => /^unhealthy/.test(m))).toEqual([]);
      expect(new Set(listener.received.map((d) => d.pid))).toEqual(new Set([process.pid]));
    } catch (err) {
      console.log(log.records.filter((r) => r.level === 'warn' || r.level === 'error' || /wedge|reopen|state/.test(r.msg ?? '')).slice(-30).map((r) => r.msg));
      throw err;
    } finally {
      await gateway.stop();
    }
    await listener.waitFor(has('STOPPING=1'), 5000);
  });
});
