import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonProcess } from '../support/daemon-process.ts';
import { freePort } from '../support/free-port.ts';

// Review point 10: two real `tether daemon` processes on one queue directory.

function config(dir: string, port: number) {
  return {
    gateway: { id: 'gw' },
    broker: { embeddedPort: port },
    queue: { dir: join(dir, 'queue') },
    // No board needed: the daemon keeps retrying a missing port while its queue and sessions run.
    devices: [{ id: 'dev-a', port: join(dir, 'no-such-port') }],
  };
}

/** Resolves with the exit code once the process has exited (deadline: `ms`). */
function exited(daemon: DaemonProcess, ms: number): Promise<number | null> {
  const child = (daemon as unknown as { child: import('node:child_process').ChildProcess }).child;
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon still running after ${ms} ms`)), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

async function until(condition: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('two daemons on one queue directory', () => {
  it('the second refuses at once with one line naming the first; the first keeps its queue and control socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-2daemons-'));
    const first = new DaemonProcess(config(dir, await freePort()), dir);
    const second = new DaemonProcess(config(dir, await freePort()), dir);
    let third: DaemonProcess | undefined;
    first.start();
    try {
      await first.waitForLog((l) => /gateway gw started/.test(l.msg ?? ''), 20_000);
      await until(() => existsSync(join(dir, 'queue', 'control.sock')), 10_000);

      second.start();
      expect(await exited(second, 15_000)).toBe(1);
      const lines = second.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^tether daemon: queue directory .*queue is in use by another tether daemon \\(pid ${first.pid} on `));
      // It started nothing: the first's control socket and lock are still there, and it runs.
      // (No journal to look at: an outbox creates its file with the first record to journal, and
      // a board that never came up has only its $state, which is kept in memory.)
      expect(existsSync(join(dir, 'queue', 'control.sock'))).toBe(true);
      expect(existsSync(join(dir, 'queue', 'daemon.lock.owner'))).toBe(true);
      expect(second.logs.some((l) => /started the embedded MQTT broker/.test(l.msg ?? ''))).toBe(false);

      // kill -9 of the holder: a restarted daemon takes the lock over within a few seconds.
      await first.kill9();
      third = new DaemonProcess(config(dir, await freePort()), dir);
      const restarted = Date.now();
      third.start();
      await third.waitForLog((l) => /gateway gw started/.test(l.msg ?? ''), 20_000);
      expect(Date.now() - restarted).toBeLessThan(10_000);
      expect(third.logs.some((l) => new RegExp(`locked by pid ${first.pid}, which is gone`).test(l.msg ?? ''))).toBe(true);
      expect(await third.stop()).toBe(0);
    } finally {
      await first.kill9();
      await second.kill9();
      await third?.kill9();
    }
  }, 60_000);
});
