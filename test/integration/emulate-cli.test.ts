import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from '../../host/index.ts';
import { EmulateProcess } from '../support/emulate-process.ts';
import { nodeOnlyEnv } from '../support/node-only-path.ts';
import { waitFor } from '../support/wait-for.ts';

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));

describe('tether emulate (CLI)', () => {
  it('freezes (watchdog resets it), resets, power-cycles and reports stats on command', async () => {
    const emulator = await EmulateProcess.start();
    try {
      // Booted: the watchdog is armed after HELLO. Counted in emulated time, which a loaded
      // machine stretches (the emulator slips rather than bursts).
      await waitFor(
        async () => {
          emulator.command('stats');
          return ((await emulator.nextEvent((e) => e.event === 'stats')).uptimeMs as number) >= 500;
        },
        { timeoutMs: 20_000, intervalMs: 0, what: '500 ms of emulated uptime' },
      );
      emulator.command('freeze');
      await emulator.nextEvent((e) => e.event === 'reset' && e.cause === 'watchdog', 10_000);
      emulator.command('reset');
      await emulator.nextEvent((e) => e.event === 'reset' && e.cause === 'external');
      emulator.command('power-cycle');
      await emulator.nextEvent((e) => e.event === 'reset' && e.cause === 'power-on');
      emulator.command('stats');
      const stats = await emulator.nextEvent((e) => e.event === 'stats');
      expect(stats.resets).toEqual({ 'power-on': 2, external: 1, 'brown-out': 0, watchdog: 1 });
      emulator.command('pin 99 1');
      const error = await emulator.nextEvent((e) => e.event === 'error');
      expect(error.message).toMatch(/pins 0-19/);
      emulator.command('bogus');
      expect((await emulator.nextEvent((e) => e.event === 'error')).message).toMatch(/unknown command 'bogus'/);
    } finally {
      expect(await emulator.stop()).toBe(0);
    }
  });

  it('exits 2 with the help on a bad option and 1 with one line on a missing image', () => {
    const bad = spawnSync(process.execPath, [CLI, 'emulate', '--speed', 'fast'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--speed must be a positive number/);
    expect(bad.stderr).toMatch(/Usage: tether emulate/);
    const missing = spawnSync(process.execPath, [CLI, 'emulate', '--hex', '/nonexistent.hex'], { encoding: 'utf8' });
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim()).toBe('tether emulate: firmware image not found: /nonexistent.hex');
  });

  it('--tcp serves the board on a TCP port with nothing but Node on PATH: a host link gets ready, clients come and go, unplug/replug', async () => {
    const emulator = await EmulateProcess.startTcp([], nodeOnlyEnv());
    try {
      const ready = emulator.events.find((e) => e.event === 'ready')!;
      expect(ready.tcp).toBe(`tcp://127.0.0.1:${emulator.tcpPort}`);
      const url = ready.tcp as string;
      const link = await connect(url, { session: { pingIntervalMs: 200 } });
      expect(link.state).toBe('ready');
      await emulator.waitFor((e) => e.event === 'connect');
      await link.close();
      await emulator.waitFor((e) => e.event === 'disconnect');

      emulator.command('unplug');
      await emulator.nextEvent((e) => e.event === 'unplugged');
      emulator.command('replug');
      expect(await emulator.nextEvent((e) => e.event === 'replugged')).toMatchObject({ tcp: url });
      const again = await connect(url, { session: { pingIntervalMs: 200 } });
      expect(again.state).toBe('ready');
      await again.close();
    } finally {
      expect(await emulator.stop()).toBe(0);
    }
  });

  it('without socat a pty cannot be made: exit 1, one line naming apt-get install socat and --tcp', () => {
    const result = spawnSync(process.execPath, [CLI, 'emulate', '--pty', '/tmp/tether-never'], { encoding: 'utf8', env: nodeOnlyEnv() });
    expect(result.status).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/socat is not installed.*apt-get install socat.*tether emulate --tcp/);
  });

  it('--tcp and --pty together, or a bad --tcp port, are usage errors (exit 2)', () => {
    const both = spawnSync(process.execPath, [CLI, 'emulate', '--tcp', '0', '--pty', '/tmp/x'], { encoding: 'utf8' });
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/--pty and --tcp .* give one/);
    const bad = spawnSync(process.execPath, [CLI, 'emulate', '--tcp', 'http'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--tcp takes a TCP port number/);
    const help = spawnSync(process.execPath, [CLI, 'emulate', '--help'], { encoding: 'utf8' });
    expect(help.stdout).toMatch(/--tcp <port>/);
    expect(help.stdout).toMatch(/net:127\.0\.0\.1:<port>/);
  });
});
