import { lookup } from 'node:dns/promises';
import { mkdtempSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { REDACTED } from '../../host/log/redact.ts';
import { boardClientId } from '../../host/gateway/board-ownership.ts';
import { DaemonProcess, type LogLine } from '../support/daemon-process.ts';
import { freePort } from '../support/free-port.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { makeTestCerts, type TestCerts } from '../support/tls-certs.ts';

// Issue 11, point 11: the real daemon warns once when the broker credentials go over plain
// mqtt:// to a host not written as loopback, and once when TLS verification is off, never
// printing the password. A real Mosquitto with a password file, a plain listener reached by
// the machine's host name (host/mqtt/broker-credentials.ts judges the host as written: only
// `localhost`, `127.x` and `::1` count as loopback), and a TLS listener.

const SECRET = 'Pl41n-t3xt-pw';
const WARN = 40; // pino's level number
const CLEAR_TEXT = /^the broker credentials go over mqtt:\/\/ in clear text to /;
const NO_VERIFY = /^TLS certificate verification is off \(broker\.tls\.rejectUnauthorized: false\)/;

describe('broker credential warnings', () => {
  let broker: RunningMosquitto;
  let board: DeviceOnTcp;
  let certs: TestCerts;
  let tlsPort: number;
  /** A plain URL to this broker by the machine's host name, which is not written as loopback. */
  let byHostName: { host: string; port: number };

  beforeAll(async () => {
    certs = makeTestCerts();
    tlsPort = await freePort();
    // The host name may resolve to loopback (Debian's 127.0.1.1, or 127.0.0.1) or to an
    // interface address: a listener on whatever it resolves to.
    // A machine whose host name does not resolve (some containers) gets 0.0.0.0, which Linux
    // connects to the local machine: also a host not written as loopback.
    const resolved = await lookup(hostname()).then(
      ({ address }) => ({ host: hostname(), address }),
      () => ({ host: '0.0.0.0', address: '127.0.0.1' }),
    );
    const { address } = resolved;
    byHostName = { host: resolved.host, port: await freePort() };
    broker = await startMosquitto({
      users: { alice: SECRET },
      extraConfig: [`listener ${byHostName.port} ${address}`, `listener ${tlsPort} 127.0.0.1`, `certfile ${certs.serverCert}`, `keyfile ${certs.serverKey}`],
    });
    board = await serveDeviceOverTcp();
  });
  afterAll(async () => {
    await board?.close();
    await broker?.stop();
    certs?.remove();
  });

  async function runDaemon(brokerConfig: Record<string, unknown>): Promise<DaemonProcess> {
    const dir = mkdtempSync(join(tmpdir(), 'tether-cred-warn-'));
    const daemon = new DaemonProcess(
      {
        gateway: { id: 'warn-gw' },
        broker: { username: 'alice', ...brokerConfig },
        queue: { dir: join(dir, 'q') },
        log: { level: 'debug' },
        control: { enabled: false },
        // No takeover delay: nothing else may claim this board, so its session connects at once.
        devices: [{ id: 'warn-dev', port: board.target, takeoverDelayMs: 0, keepalive: { intervalMs: 250, misses: 4 } }],
      },
      dir,
    );
    daemon.start({ env: { TETHER_BROKER_PASSWORD: SECRET } });
    try {
      // Connected (the password was right) and the board's session too: every session is up, so
      // a warning per session, or per reconnect, would be in the log by now.
      await daemon.waitForLog((l) => l.msg === 'connected to the MQTT broker' && l.clientId === boardClientId('warn-dev'), 30_000);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    expect(daemon.stdout + daemon.stderr).not.toContain(SECRET);
    return daemon;
  }
  const warnings = (d: DaemonProcess, re: RegExp) => d.logs.filter((l: LogLine) => l.level === WARN && re.test(l.msg ?? ''));

  it('credentials over plain mqtt:// to the host name: one WARN naming the host, the password not printed', async () => {
    const daemon = await runDaemon({ url: `mqtt://${byHostName.host}:${byHostName.port}` });
    const warned = warnings(daemon, CLEAR_TEXT);
    expect(warned).toHaveLength(1);
    expect(warned[0]!.msg).toContain(`to ${byHostName.host}:`);
    expect(warnings(daemon, NO_VERIFY)).toHaveLength(0);
  }, 60_000);

  it('the same in the URL itself: one WARN, the URL it names redacted', async () => {
    const daemon = await runDaemon({ url: `mqtt://alice:${SECRET}@${byHostName.host}:${byHostName.port}` });
    const warned = warnings(daemon, CLEAR_TEXT);
    expect(warned).toHaveLength(1);
    expect(warned[0]!.url).toBe(`mqtt://alice:${REDACTED}@${byHostName.host}:${byHostName.port}`);
  }, 60_000);

  it('credentials over mqtt:// to 127.0.0.1: no warning (loopback does not leave the machine)', async () => {
    const daemon = await runDaemon({ url: broker.url });
    expect(warnings(daemon, CLEAR_TEXT)).toHaveLength(0);
  }, 60_000);

  it('mqtts:// with rejectUnauthorized: false: one WARN (it connects to a certificate nobody vouches for), no clear-text warning', async () => {
    const daemon = await runDaemon({ url: `mqtts://127.0.0.1:${tlsPort}`, tls: { rejectUnauthorized: false } });
    expect(warnings(daemon, NO_VERIFY)).toHaveLength(1);
    expect(warnings(daemon, CLEAR_TEXT)).toHaveLength(0);
  }, 60_000);
});
