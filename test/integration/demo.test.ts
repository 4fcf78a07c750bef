import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../support/free-port.ts';

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));


describe('tether demo (the README command)', () => {
  it('brings the emulated board up as ready on the embedded broker within 20 s, visible with mosquitto_sub, and --for exits 0', async () => {
    const port = await freePort();
    const started = performance.now();
    const demo = spawn(process.execPath, [CLI, 'demo', '--for', '15s', '--mqtt-port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    demo.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    demo.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));

    // mosquitto_sub, as the demo tells the user; retried until the broker listens.
    let readyAt: number | null = null;
    while (readyAt === null && performance.now() - started < 20_000) {
      const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-t', 'homie/5/demo-uno/$state', '-v', '-W', '3'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let seen = '';
      sub.stdout!.on('data', (d: Buffer) => {
        seen += d.toString();
        if (/\$state ready/.test(seen)) {
          readyAt = performance.now();
          sub.kill();
        }
      });
      await new Promise((resolve) => sub.once('exit', resolve));
      if (readyAt === null) await new Promise((r) => setTimeout(r, 200));
    }
    expect(readyAt, `no ready within 20 s; demo output:\n${output}`).not.toBeNull();
    console.log(`demo: ready on the broker ${Math.round(readyAt! - started)} ms after start`);
    expect(output).toContain(`mosquitto_sub -h 127.0.0.1 -p ${port} -t 'homie/5/#' -v`);

    const code = await exited;
    const ranFor = performance.now() - started;
    expect(code).toBe(0);
    expect(ranFor).toBeGreaterThanOrEqual(15_000);
    expect(output).toMatch(/demo-uno {2}state ready/);
    expect(output).toContain('tether demo: stopped');
  }, 60_000);

  it('rejects a bad --for with a usage error', async () => {
    const demo = spawn(process.execPath, [CLI, 'demo', '--for', 'soon'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    demo.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((resolve) => demo.once('exit', resolve));
    expect(code).toBe(2);
    expect(err).toMatch(/--for takes a duration like 15s/);
  });
});
