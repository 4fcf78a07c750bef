import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait-for.ts';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';

// Never print a secret: a real Mosquitto with a password file, the real daemon process given
// the password three ways (in the URL, in a file, in the environment); it connects each time,
// and nothing it prints, nor `--check`, contains the password.

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));
const SECRET = 'Sup3r-s3cret-pw';

describe('broker credentials', () => {
  let broker: RunningMosquitto;
  let board: DeviceOnTcp;

  beforeAll(async () => {
    broker = await startMosquitto({ users: { alice: SECRET } });
    board = await serveDeviceOverTcp();
  });
  afterAll(async () => {
    await board?.close();
    await broker?.stop();
  });

  const device = (target: string) => ({ id: 'cred-dev', port: target, keepalive: { intervalMs: 250, misses: 4 } });

  async function seesReady(): Promise<void> {
    const client = await mqtt.connectAsync(broker.url, { username: 'alice', password: SECRET, reconnectPeriod: 0 });
    try {
      const seen: string[] = [];
      client.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
      await client.subscribeAsync('homie/5/cred-dev/$state', { qos: 1 });
      await waitFor(() => seen.includes('homie/5/cred-dev/$state ready'), { what: 'seen toContain \'homie/5/cred-dev/$state ready\'', timeoutMs: 15_000 });
    } finally {
      await client.endAsync();
    }
  }

  const cases: Array<{ name: string; broker: (dir: string) => Record<string, unknown>; env?: Record<string, string> }> = [
    { name: 'in the URL', broker: () => ({ url: `mqtt://alice:${SECRET}@127.0.0.1:${broker.port}` }) },
    {
      name: 'in broker.passwordFile',
      broker: (dir) => {
        writeFileSync(join(dir, 'broker-password'), `${SECRET}\n`, { mode: 0o600 });
        return { url: broker.url, username: 'alice', passwordFile: join(dir, 'broker-password') };
      },
    },
    { name: 'in $TETHER_BROKER_PASSWORD', broker: () => ({ url: broker.url, username: 'alice' }), env: { TETHER_BROKER_PASSWORD: SECRET } },
  ];

  for (const c of cases) {
    it(`password ${c.name}: connects, and the password is never printed`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tether-cred-'));
      const daemon = new DaemonProcess({ gateway: { id: 'cred-gw' }, broker: c.broker(dir), queue: { dir: join(dir, 'q') }, log: { level: 'debug' }, devices: [device(board.target)] }, dir);
      daemon.start({ env: c.env });
      try {
        await daemon.waitForLog((l) => l.msg === 'connected to the MQTT broker');
        await seesReady();
      } finally {
        expect(await daemon.stop()).toBe(0);
      }
      expect(daemon.stdout).toContain('connecting to the MQTT broker');
      expect(daemon.stdout + daemon.stderr).not.toContain(SECRET);
      const check = await promisify(execFile)(process.execPath, [CLI, 'daemon', '--check', '--config', daemon.configPath]);
      expect(check.stdout).toMatch(/valid/);
      expect(check.stdout + check.stderr).not.toContain(SECRET);
    });
  }

  it('a wrong password is not echoed by a config error either', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-cred-'));
    const path = join(dir, 'tether.yaml');
    writeFileSync(path, stringify({ broker: { url: broker.url, username: 'alice', password: 12345678 }, devices: [device(board.target)] }));
    const err = await promisify(execFile)(process.execPath, [CLI, 'daemon', '--check', '--config', path]).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).toBe(78);
    expect((err as { stderr: string }).stderr).toMatch(/broker\.password: expected string, got \*\*\*/);
    expect((err as { stderr: string }).stderr).not.toContain('12345678');
  });
});
