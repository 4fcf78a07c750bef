import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { freePort } from '../support/free-port.ts';
import { nodeOnlyEnv } from '../support/node-only-path.ts';

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));
const inCi = process.env.CI === 'true';

/** Runs the mosquitto_sub command the demo prints (the test process's PATH has it), for one message. */
function mosquittoSubOnce(port: number, topic: string): Promise<{ code: number | null; out: string; missing: boolean }> {
  return new Promise((resolve) => {
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-t', topic, '-v', '-C', '1', '-W', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    sub.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    sub.once('error', (err: NodeJS.ErrnoException) => resolve({ code: null, out, missing: err.code === 'ENOENT' }));
    sub.once('exit', (code) => resolve({ code, out, missing: false }));
  });
}

describe('tether demo (the README command)', () => {
  it('with only Node on PATH (no socat, no mosquitto tools): the board is ready on the embedded broker, the printed mosquitto_sub command sees it, --for exits 0', async () => {
    const port = await freePort();
    const httpPort = await freePort();
    const started = performance.now();
    const demo = spawn(process.execPath, [CLI, 'demo', '--for', '20s', '--mqtt-port', String(port), '--http-port', String(httpPort)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: nodeOnlyEnv(),
    });
    let output = '';
    demo.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    demo.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));

    // A subscriber in this process (mqtt.js), retrying until the embedded broker listens.
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 100, connectTimeout: 2000 });
    client.on('error', () => {}); // refused until the broker is up; it retries
    let readyAt: number | null = null;
    const seenReady = new Promise<void>((resolve) =>
      client.on('message', (topic, payload) => {
        if (topic === 'homie/5/demo-uno/$state' && payload.toString() === 'ready' && readyAt === null) {
          readyAt = performance.now();
          resolve();
        }
      }),
    );
    client.on('connect', () => void client.subscribeAsync('homie/5/#', { qos: 1 }).catch(() => {}));
    let deadline: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        seenReady,
        exited.then((code) => Promise.reject(new Error(`demo exited (${code}) before ready:\n${output}`))),
        new Promise((_, reject) => (deadline = setTimeout(() => reject(new Error(`no $state ready within 20 s; demo output:\n${output}`)), 20_000))),
      ]);
    } finally {
      clearTimeout(deadline);
      await client.endAsync(true);
    }
    console.log(`demo: $state ready on the broker ${Math.round(readyAt! - started)} ms after spawning the demo (no socat on its PATH)`);
    expect(output).toMatch(/an emulated Uno \(real firmware\) served at tcp:\/\/127\.0\.0\.1:\d+, the embedded broker at mqtt:\/\/127\.0\.0\.1:\d+/);
    expect(output).toContain(`mosquitto_sub -h 127.0.0.1 -p ${port} -t 'homie/5/#' -v`);
    // The status page it prints is served (the browser test is status-page-browser.test.ts).
    expect(output).toContain(`Status page: http://127.0.0.1:${httpPort}/`);
    expect((await fetch(`http://127.0.0.1:${httpPort}/`)).status).toBe(200);
    const status = (await (await fetch(`http://127.0.0.1:${httpPort}/api/status`)).json()) as { devices: Array<{ id: string; facts: { state: string } }> };
    expect(status.devices.map((d) => [d.id, d.facts.state])).toEqual([['demo-uno', 'ready']]);

    // The command the demo prints works (from the test's PATH: the demo itself needs no mosquitto tools).
    const sub = await mosquittoSubOnce(port, 'homie/5/demo-uno/$state');
    if (sub.missing) {
      if (inCi) throw new Error('mosquitto_sub is not installed on this CI machine (Debian: mosquitto-clients); scripts/test-all.sh installs it');
      console.log('demo: mosquitto_sub not installed here, its check was left out (CI fails instead)');
    } else {
      expect(sub.out.trim()).toBe('homie/5/demo-uno/$state ready');
    }

    const code = await exited;
    const ranFor = performance.now() - started;
    expect(code, output).toBe(0);
    expect(ranFor).toBeGreaterThanOrEqual(20_000);
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
