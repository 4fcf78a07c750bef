import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ciMustHave, toolAvailable } from '../support/find-tool.ts';
import { eventually, waitFor } from '../support/wait-for.ts';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { has, NotifyListener } from '../support/notify-listener.ts';

// packaging/tether.service: its hardening score must not get worse, and the daemon must run
// under its system call filter. No systemd runs here (not PID 1), so the filter is rebuilt
// from the unit by scripts/check-syscall-filter.py (libseccomp, python3-seccomp) with the
// syscall groups of the installed systemd, and the real daemon runs under it.

const UNIT = fileURLToPath(new URL('../../packaging/tether.service', import.meta.url));
const CHECK = fileURLToPath(new URL('../../scripts/check-syscall-filter.py', import.meta.url));
// Missing tools skip the tests here with a line saying so; under CI=true they run and fail.
const hasAnalyze = toolAvailable('systemd-analyze', 'systemd');
const hasSeccomp = spawnSync('/usr/bin/python3', ['-c', 'import seccomp']).status === 0 || ciMustHave('python3 with the seccomp module', 'python3-seccomp');
/** The exposure this unit scored when the check was added; lower is better. */
const BEST_EXPOSURE = 1.5;

describe('packaging/tether.service', () => {
  it.skipIf(!hasAnalyze)(`systemd-analyze security scores it ${BEST_EXPOSURE} or better (it was 3.6)`, () => {
    const out = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT], { encoding: 'utf8' });
    const exposure = Number(/Overall exposure level for tether\.service: ([\d.]+)/.exec(out.stdout)?.[1]);
    console.log(`systemd-analyze security: ${exposure}`);
    expect(exposure).toBeLessThanOrEqual(BEST_EXPOSURE);
    expect(spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8' }).stderr).not.toMatch(/Unknown key|Failed to parse|Invalid/i);
  });

  describe.skipIf(!hasSeccomp || !hasAnalyze)('the daemon under the unit\'s SystemCallFilter (seccomp via python3-seccomp)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-seccomp-'));
    const pty = join(dir, 'uno');
    let board: DeviceOnTcp;
    let listener: NotifyListener;
    let socat: ChildProcess;

    beforeAll(async () => {
      board = await serveDeviceOverTcp();
      listener = await NotifyListener.start(join(dir, 'notify.sock'));
      socat = spawn('socat', [`pty,raw,echo=0,link=${pty}`, `pty,raw,echo=0,link=${join(dir, 'other-end')}`], { stdio: 'ignore' });
      await waitFor(() => existsSync(pty), { what: "socat's pty", timeoutMs: 5000, intervalMs: 20 });
    });

    afterAll(async () => {
      socat?.kill();
      await listener?.close();
      await board?.close();
    });

    it('starts, notifies, serves a board, the broker, metrics and stty -hupcl, and stops cleanly', async () => {
      const daemon = new DaemonProcess(
        {
          gateway: { id: 'gw' },
          broker: { embeddedPort: 0 },
          queue: { dir: join(dir, 'queue') },
          metrics: { port: 0 },
          devices: [
            { id: 'bridged', port: board.target, keepalive: { intervalMs: 200, misses: 3 } },
            { id: 'serial', port: pty, hupcl: false, keepalive: { intervalMs: 200, misses: 3 } },
          ],
        },
        dir,
      );
      daemon.start({ env: { NOTIFY_SOCKET: listener.address, WATCHDOG_USEC: '2000000' }, wrapper: ['/usr/bin/python3', CHECK, '--unit', UNIT, '--'] });
      try {
        await listener.waitFor(has('READY=1'), 20_000);
        await listener.waitFor((d) => /^STATUS=2 devices: 1 ready, 1 (init|lost); broker connected/m.test(d.text), 20_000);
        await listener.waitFor(has('WATCHDOG=1'), 5000);
        const url = String((await daemon.waitForLog((l) => /^Prometheus metrics at /.test(l.msg ?? ''))).url);
        // The bridged board is ready (asked again: on a loaded machine a 600 ms bound may lapse once).
        await eventually(async () => expect(await (await fetch(url)).text()).toMatch(/^tether_device_state\{device="bridged",state="ready"\} 1$/m), {
          timeoutMs: 10_000,
          intervalMs: 100,
        });
        expect(execFileSync('stty', ['-F', pty, '-a']).toString()).toMatch(/(^|\s)-hupcl(\s|$)/);
        expect(await daemon.stop()).toBe(0);
        await listener.waitFor(has('STOPPING=1'), 5000);
        expect(new Set(listener.received.map((d) => d.pid))).toEqual(new Set([daemon.pid]));
        expect(daemon.stderr).toMatch(/check-syscall-filter: \d+ system calls allowed, others fail with EPERM/);
        expect(daemon.logs.filter((l) => l.level >= 50)).toEqual([]);
      } catch (err) {
        console.log(daemon.stderr.slice(-2000), daemon.logs.slice(-20));
        throw err;
      } finally {
        await daemon.kill9();
      }
    });
  });
});
