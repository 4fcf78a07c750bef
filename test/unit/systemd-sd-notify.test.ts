import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { datagramSender, findExecutable, format, helperSender, SdNotify, socatAddress } from '../../host/systemd/sd-notify.ts';

const noAddon = (): never => {
  throw new Error("Cannot find module 'unix-dgram'\nRequire stack: ...");
};

/** A sender whose sends finish only when the test says so. */
function fakeSender() {
  const sent: string[] = [];
  const waiting: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  return {
    sent,
    inFlight: () => waiting.length,
    send: (message: string) =>
      new Promise<void>((resolve, reject) => {
        sent.push(message);
        waiting.push({ resolve, reject });
      }),
    finish: async (err?: Error) => {
      const w = waiting.shift()!;
      if (err) w.reject(err);
      else w.resolve();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    },
  };
}

describe('SdNotify', () => {
  it('without NOTIFY_SOCKET everything is a no-op', async () => {
    const sender = fakeSender();
    const n = new SdNotify({ env: {}, send: sender.send });
    expect(n.enabled).toBe(false);
    n.ready();
    n.status('x');
    n.watchdog();
    n.stopping();
    await n.idle();
    expect(sender.sent).toEqual([]);
  });

  it('one send in flight; what is asked meanwhile is coalesced: the newest STATUS wins, many WATCHDOGs become one', async () => {
    const sender = fakeSender();
    const n = new SdNotify({ env: { NOTIFY_SOCKET: '/run/x' }, send: sender.send });
    expect(n.enabled).toBe(true);
    n.ready();
    expect(sender.sent).toEqual(['READY=1']);
    n.status('1 device: 1 init; broker disconnected');
    n.watchdog();
    n.status('1 device: 1 ready;\nbroker connected');
    n.watchdog();
    n.watchdog();
    expect(sender.inFlight()).toBe(1);
    expect(sender.sent).toHaveLength(1);
    await sender.finish();
    expect(sender.sent).toEqual(['READY=1', 'STATUS=1 device: 1 ready; broker connected\nWATCHDOG=1']);
    n.stopping();
    await sender.finish();
    expect(sender.sent.at(-1)).toBe('STOPPING=1');
    await sender.finish();
    await n.idle();
    expect(sender.inFlight()).toBe(0);
    expect(n.sentCount).toBe(3);
  });

  it('a pending WATCHDOG survives a failed send; failures are logged once until one works, never thrown', async () => {
    const sender = fakeSender();
    const log = new RecordingLogger();
    const n = new SdNotify({ env: { NOTIFY_SOCKET: '@abstract' }, send: sender.send, logger: log });
    n.watchdog();
    n.watchdog(); // pending behind the first
    await sender.finish(new Error('boom 1'));
    expect(sender.sent).toEqual(['WATCHDOG=1', 'WATCHDOG=1']);
    await sender.finish(new Error('boom 2'));
    n.watchdog();
    await sender.finish(new Error('boom 3'));
    const warnings = log.records.filter((r) => r.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.obj).toMatchObject({ err: 'boom 1' });
    n.watchdog();
    await sender.finish();
    expect(log.records.some((r) => r.level === 'info' && /works again/.test(r.msg ?? ''))).toBe(true);
    n.watchdog();
    await sender.finish(new Error('boom 4'));
    expect(log.records.filter((r) => r.level === 'warn')).toHaveLength(2);
    await n.idle();
  });

  it('formats assignments in a fixed order', () => {
    expect(format({ ready: true, stopping: false, watchdog: true, status: 'a b' })).toBe('READY=1\nSTATUS=a b\nWATCHDOG=1');
    expect(format({ ready: false, stopping: false, watchdog: false, status: null })).toBe('');
  });

  it('socat addresses: paths escaped, @names abstract', () => {
    expect(socatAddress('/run/systemd/notify')).toBe('UNIX-SENDTO:/run/systemd/notify');
    expect(socatAddress('@/org/freedesktop/systemd1/notify/123')).toBe('ABSTRACT-SENDTO:/org/freedesktop/systemd1/notify/123');
    expect(socatAddress('/tmp/a,b:c')).toBe('UNIX-SENDTO:/tmp/a\\,b\\:c');
  });

  it('picks systemd-notify (with --pid and each assignment as an argument), else socat (message on stdin), else nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-sdnotify-'));
    const out = join(dir, 'out');
    // Stand-ins that record how they were called.
    writeFileSync(join(dir, 'systemd-notify'), `#!/bin/sh\nprintf '%s|' "$NOTIFY_SOCKET" "$@" > ${out}\n`);
    chmodSync(join(dir, 'systemd-notify'), 0o755);
    const env = { PATH: dir };
    expect(findExecutable('systemd-notify', dir)).toBe(join(dir, 'systemd-notify'));
    expect(findExecutable('socat', dir)).toBeNull();
    const viaNotify = helperSender('/run/n', { pid: 4242, env })!;
    expect(viaNotify.via).toBe('systemd-notify');
    await viaNotify.send('READY=1\nSTATUS=2 devices: 2 ready; broker connected');
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(out, 'utf8')).toBe('/run/n|--pid=4242|READY=1|STATUS=2 devices: 2 ready; broker connected|');

    writeFileSync(join(dir, 'socat'), `#!/bin/sh\n{ printf '%s|' "$@"; /bin/cat; } > ${out}\n`);
    chmodSync(join(dir, 'socat'), 0o755);
    const viaSocat = helperSender('@abs', { pid: 1, env, prefer: 'socat' })!;
    expect(viaSocat.via).toBe('socat');
    await viaSocat.send('WATCHDOG=1');
    expect(readFileSync(out, 'utf8')).toBe('-u|-|ABSTRACT-SENDTO:abs|WATCHDOG=1');

    writeFileSync(join(dir, 'socat'), '#!/bin/sh\necho "no such socket" >&2\nexit 1\n');
    await expect(helperSender('/x', { pid: 1, env, prefer: 'socat' })!.send('READY=1')).rejects.toThrow(/exited with 1: no such socket/);
    expect(helperSender('/x', { pid: 1, env: { PATH: join(dir, 'none') } })).toBeNull();

    const log = new RecordingLogger();
    const n = new SdNotify({ env: { NOTIFY_SOCKET: '/x', PATH: join(dir, 'none') }, logger: log, loadUnixDgram: noAddon });
    expect(n.enabled).toBe(false);
    expect(log.records.filter((r) => r.level === 'error').map((r) => r.msg)).toEqual([
      expect.stringMatching(/unix-dgram is not available.*neither systemd-notify nor socat/),
    ]);
  });

  it('sends from the daemon itself with unix-dgram; falls back to a helper (and says NotifyAccess=all) without the addon or for an abstract socket', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-sdnotify-'));
    writeFileSync(join(dir, 'systemd-notify'), '#!/bin/sh\n');
    chmodSync(join(dir, 'systemd-notify'), 0o755);
    const env = { PATH: dir };
    expect(new SdNotify({ env: { ...env, NOTIFY_SOCKET: '/run/systemd/notify' } }).via).toBe('unix-dgram');

    for (const [socket, addon, why] of [
      ['/run/systemd/notify', noAddon, /unix-dgram is not available \(Cannot find module 'unix-dgram'\)/],
      ['@/org/freedesktop/systemd1/notify', undefined, /is abstract/],
    ] as const) {
      const log = new RecordingLogger();
      const n = new SdNotify({ env: { ...env, NOTIFY_SOCKET: socket }, logger: log, loadUnixDgram: addon });
      expect(n.via).toBe('systemd-notify');
      const warning = log.records.find((r) => r.level === 'warn')!;
      expect(warning.msg).toMatch(/NotifyAccess=all/);
      expect(String((warning.obj as { why?: unknown }).why)).toMatch(why);
    }
    expect(datagramSender('@abs')).toEqual({ unavailable: expect.stringMatching(/abstract/) });
  });

  it('unix-dgram: a send to a socket nobody listens on fails with its errno name', async () => {
    const sender = datagramSender(join(mkdtempSync(join(tmpdir(), 'tether-sdnotify-')), 'absent.sock'));
    if (!('send' in sender)) throw new Error(sender.unavailable);
    await expect(sender.send('WATCHDOG=1')).rejects.toThrow(/sendto .*absent\.sock failed: ENOENT/);
  });

  it('a helper that hangs is killed after its timeout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-sdnotify-'));
    writeFileSync(join(dir, 'socat'), '#!/bin/sh\nexec /bin/sleep 30\n');
    chmodSync(join(dir, 'socat'), 0o755);
    const started = Date.now();
    await expect(helperSender('/x', { pid: 1, env: { PATH: dir }, timeoutMs: 200 })!.send('READY=1')).rejects.toThrow(/did not finish within 200 ms/);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
