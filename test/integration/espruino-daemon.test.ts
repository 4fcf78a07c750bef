import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EspruinoOnPty } from '../../emulator/espruino/espruino-on-pty.ts';
import { readEspruinoModule } from '../../host/espruino/module-source.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { freePort } from '../support/free-port.ts';
import { MqttWatcher } from '../support/mqtt-watcher.ts';

// `tether daemon` (a real process, embedded broker) with one `board: espruino` device: the
// emulated Espruino running the keepalive module (in this process, real time) on a pty.

describe('the daemon with an Espruino board', () => {
  it('ready over the REPL framing; frozen: lost; the watchdog resets it and it is ready again; stop: disconnected', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-espruino-daemon-'));
    const ptyPath = join(dir, 'pico');
    const espruino = await EspruinoOnPty.start({ ptyPath, program: readEspruinoModule() });
    const port = await freePort();
    const daemon = new DaemonProcess(
      {
        broker: { embeddedPort: port },
        queue: { dir: join(dir, 'queue') },
        devices: [{ id: 'pico', name: 'Pico on the shelf', board: 'espruino', port: ptyPath, keepalive: { intervalMs: 200, misses: 3 } }],
      },
      dir,
    );
    daemon.start();
    let watcher: MqttWatcher | null = null;
    try {
      await daemon.waitForLog((l) => /gateway .* started/.test(l.msg ?? ''));
      watcher = await MqttWatcher.connect(`mqtt://127.0.0.1:${port}`, 'homie/5/pico/#', { protocolVersion: 4 });
      await watcher.waitFor('homie/5/pico/$state', 'ready');
      const description = JSON.parse(watcher.last('homie/5/pico/$description')!) as { type: string; name: string; nodes: Record<string, unknown> };
      expect(description).toMatchObject({ type: 'tether-espruino', name: 'Pico on the shelf' });
      expect(Object.keys(description.nodes)).toEqual(['tether']);
      await watcher.waitFor('homie/5/pico/tether/boot-id', (p) => Number(p) >= 1);
      await watcher.waitFor('homie/5/pico/tether/rtt', (p) => Number(p) > 0);

      // The interpreter hangs: no PONG, so lost within the detector's bound (3 x 200 ms + slack).
      const mark = watcher.received.length;
      espruino.board.freeze();
      const frozenAt = Date.now();
      await watcher.waitFor('homie/5/pico/$state', 'lost', 5000, mark);
      expect(Date.now() - frozenAt).toBeLessThan(3000);
      // Its watchdog (2 s, kicked only while healthy) resets it; the module boots and says HELLO.
      await watcher.waitFor('homie/5/pico/$state', 'ready', 10_000, mark);
      await watcher.waitFor('homie/5/pico/tether/reset-cause', 'watchdog', 5000, mark);
      expect(espruino.board.stats.resets.watchdog).toBe(1);

      const stopMark = watcher.received.length;
      expect(await daemon.stop()).toBe(0);
      await watcher.waitFor('homie/5/pico/$state', 'disconnected', 5000, stopMark);
      expect(daemon.stderr).toBe('');
    } finally {
      await daemon.kill9();
      await watcher?.close();
      await espruino.close();
    }
  });
});
