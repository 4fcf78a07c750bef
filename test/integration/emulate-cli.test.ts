import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { EmulateProcess } from '../support/emulate-process.ts';

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));

describe('tether emulate (CLI)', () => {
  it('freezes (watchdog resets it), resets, power-cycles and reports stats on command', async () => {
    const emulator = await EmulateProcess.start();
    try {
      await new Promise((r) => setTimeout(r, 500)); // booted: the watchdog is armed after HELLO
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
});
