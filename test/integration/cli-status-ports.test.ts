import { describe, expect, it } from 'vitest';
import { spawnSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { startEmbeddedBroker } from '../../host/mqtt/embedded-broker.ts';

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('tether status', () => {
  it('lists the Homie devices a broker knows, with $state and keepalive properties', async () => {
    const broker = await startEmbeddedBroker();
    const client = await mqtt.connectAsync(broker.url);
    try {
      const retained = { qos: 1 as const, retain: true };
      await client.publishAsync('homie/5/uno-a/$state', 'ready', retained);
      await client.publishAsync('homie/5/uno-a/tether/rtt', '12.5', retained);
      await client.publishAsync('homie/5/uno-a/tether/reboots', '3', retained);
      await client.publishAsync('homie/5/uno-a/tether/reset-cause', 'watchdog', retained);
      await client.publishAsync('homie/5/uno-b/$state', 'lost', retained);
      const { code, stdout } = await run(['status', '--broker', broker.url, '--wait', '500ms']);
      expect(code).toBe(0);
      const lines = stdout.trim().split('\n');
      expect(lines[0]).toMatch(/^DEVICE\s+STATE\s+RTT ms/);
      expect(lines[1]).toMatch(/^uno-a\s+ready\s+12\.5\s+-\s+-\s+watchdog\s+3/);
      expect(lines[2]).toMatch(/^uno-b\s+lost\s+-/);
      const json = await run(['status', '--broker', broker.url, '--wait', '500ms', '--json']);
      expect(JSON.parse(json.stdout)).toMatchObject({ 'uno-a': { state: 'ready', keepalive: { rtt: '12.5' } }, 'uno-b': { state: 'lost' } });
    } finally {
      await client.endAsync();
      await broker.close();
    }
  });

  it('says so and exits 1 when the broker is unreachable; exits 2 without --broker', async () => {
    const down = await run(['status', '--broker', 'mqtt://127.0.0.1:1']);
    expect(down.code).toBe(1);
    expect(down.stderr.trim()).toMatch(/^tether status: cannot reach the broker at mqtt:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/);
    const usage = await run(['status']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--broker <url> is required/);
  });
});

describe('tether ports', () => {
  it('lists serial ports as JSON (without crashing when udev is missing)', () => {
    const result = spawnSync(process.execPath, [CLI, 'ports', '--json'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    const ports = JSON.parse(result.stdout) as Array<{ path: string }>;
    expect(Array.isArray(ports)).toBe(true);
    for (const p of ports) expect(p.path).toMatch(/^\/dev\//);
  });
});
