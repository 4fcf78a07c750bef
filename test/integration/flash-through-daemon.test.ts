import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { FIRMWARE_HEX_PATH, PACKAGE_ROOT } from '../../host/paths.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { freePort } from '../support/free-port.ts';
import { MqttWatcher } from '../support/mqtt-watcher.ts';
import { waitFor } from '../support/wait-for.ts';

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));
const OPTIBOOT = join(PACKAGE_ROOT, 'firmware/bootloader/optiboot_atmega328.hex');

describe('tether flash through a running daemon', () => {
  it('lends the port out ($state init), flashes through Optiboot, then the board is ready with its state replayed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-dflash-'));
    const board = await BoardOnPty.start({ hexPath: FIRMWARE_HEX_PATH, bootloaderPath: OPTIBOOT, ptyPath: join(dir, 'uno') });
    const port = await freePort();
    const socket = join(dir, 'control.sock');
    const daemon = new DaemonProcess(
      {
        broker: { embeddedPort: port },
        queue: { dir: join(dir, 'queue') },
        control: { socket },
        devices: [{ id: 'uno', port: join(dir, 'uno'), keepalive: { intervalMs: 500, misses: 4 }, components: [{ type: 'led', id: 'status', pin: 13 }] }],
      },
      dir,
    );
    daemon.start();
    let watcher: MqttWatcher | null = null;
    try {
      await daemon.waitForLog((l) => /control socket/.test(l.msg ?? ''));
      watcher = await MqttWatcher.connect(`mqtt://127.0.0.1:${port}`, 'homie/5/uno/#', { protocolVersion: 4 });
      await watcher.waitFor('homie/5/uno/$state', 'ready');
      await watcher.publish('homie/5/uno/status/on/set', 'true');
      await watcher.waitFor('homie/5/uno/status/on', 'true');
      const pagesBefore = board.uno.stats.flashPagesWritten;
      const mark = watcher.received.length;

      const cli = spawn(process.execPath, [CLI, 'flash', '--port', join(dir, 'uno'), '--daemon', socket], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      cli.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      cli.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise((resolve) => cli.once('exit', resolve));
      expect(code, out).toBe(0);
      expect(out).toMatch(/the daemon wrote \d+ bytes .* and verified them/);
      expect(out).toMatch(/writing 100%/); // progress came through the daemon
      expect(board.uno.stats.flashPagesWritten - pagesBefore).toBeGreaterThanOrEqual(60);

      const states = () => watcher!.received.slice(mark).filter((r) => r.topic === 'homie/5/uno/$state').map((r) => r.payload);
      await waitFor(() => states().at(-1) === 'ready', { timeoutMs: 15_000, what: "$state 'ready' after the flash", detail: () => `states: ${states().join(', ')}` });
      expect(states()).toContain('init');
      expect(states().at(-1)).toBe('ready');
      expect(states()).not.toContain('lost');
      await waitFor(() => board.uno.digitalOutput(13) === true, { timeoutMs: 5000, what: 'pin 13 high again' });
      expect(board.uno.digitalOutput(13)).toBe(true); // the LED the program had on is on again
    } finally {
      await watcher?.close();
      expect(await daemon.stop()).toBe(0);
      await board.close();
    }
  }, 90_000);

  it('says clearly when no daemon listens on the socket', async () => {
    const cli = spawn(process.execPath, [CLI, 'flash', '--port', '/dev/null', '--daemon', '/tmp/tether-no-such.sock'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    cli.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((resolve) => cli.once('exit', resolve));
    expect(code).toBe(1);
    expect(err.trim()).toBe('tether flash: no tether daemon listening on /tmp/tether-no-such.sock');
  });
});
