import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { BrokerSession, type BrokerSessionOptions } from '../../host/mqtt/broker-session.ts';
import { DaemonProcess } from '../support/daemon-process.ts';
import { freePort } from '../support/free-port.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { toolAvailable } from '../support/find-tool.ts';
import { startNginxWsProxy, type RunningNginx } from '../support/nginx.ts';
import { makeTestCerts, type TestCerts } from '../support/tls-certs.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { waitFor } from '../support/wait-for.ts';
import { serveDeviceOverTcp } from '../../emulator/simulator/tcp-device-server.ts';

/** Debian's nginx; missing under CI=true, the tests below run and fail (the test script installs it). */
const haveNginx = toolAvailable('nginx', 'nginx');

const nk = createRequire(import.meta.url)('net-keepalive') as { getUserTimeout(s: net.Socket): number; getKeepAliveInterval(s: net.Socket): number };

const USER = 'gateway';
const PASSWORD = 'Tr0ub4dor-and-3';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Real Mosquitto with a password file, a TLS listener (a CA and a server certificate made by
 * openssl here) and a WebSocket listener behind nginx with TLS (wss://).
 */
describe.skipIf(!haveNginx)('the broker over TLS and wss:// through nginx, with a password file', () => {
  let certs: TestCerts;
  let broker: RunningMosquitto;
  let tlsPort: number;
  let wsPort: number;
  let nginx: RunningNginx;
  const sessions: BrokerSession[] = [];

  beforeAll(async () => {
    certs = makeTestCerts();
    tlsPort = await freePort();
    wsPort = await freePort();
    broker = await startMosquitto({
      users: { [USER]: PASSWORD },
      extraConfig: [
        `listener ${tlsPort} 127.0.0.1`,
        `cafile ${certs.ca}`,
        `certfile ${certs.serverCert}`,
        `keyfile ${certs.serverKey}`,
        `listener ${wsPort} 127.0.0.1`,
        'protocol websockets',
      ],
    });
    nginx = await startNginxWsProxy({ upstreamPort: wsPort, tls: { cert: certs.serverCert, key: certs.serverKey }, readTimeoutSec: 4 });
  });
  afterAll(async () => {
    for (const s of sessions) s.kill();
    await nginx?.stop();
    await broker?.stop();
    certs?.remove();
  });

  function session(options: Partial<BrokerSessionOptions> & { url: string }) {
    const logger = new RecordingLogger();
    const s = new BrokerSession({ clientId: `tls-${sessions.length}`, username: USER, password: PASSWORD, logger, backoff: { initialMs: 100, maxMs: 200 }, ...options });
    sessions.push(s);
    const downs: string[] = [];
    s.on('down', (r) => downs.push(r));
    return { s, logger, downs };
  }
  const up = (s: BrokerSession, ms = 5000) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not up within ${ms} ms`)), ms);
      s.once('up', () => (clearTimeout(timer), resolve()));
    });

  it('mqtts:// with the right CA and password connects; the socket has TCP_USER_TIMEOUT = keepalive + PINGRESP bound', async () => {
    const { s } = session({ url: `mqtts://127.0.0.1:${tlsPort}`, tls: { ca: certs.ca }, keepaliveSec: 10, pingRespTimeoutMs: 2000 });
    s.start();
    await up(s);
    const stream = (s as unknown as { client: { stream: net.Socket } }).client.stream;
    expect(nk.getUserTimeout(stream)).toBe(12_000);
    expect(nk.getKeepAliveInterval(stream)).toBe(1000);
    await s.stop();
  });

  it('wss:// through nginx with TLS connects; WebSocket pings keep nginx (proxy_read_timeout 4 s) from cutting an idle session; without them it is cut', async () => {
    const pinging = session({ url: nginx.url, tls: { ca: certs.ca }, keepaliveSec: 60, websocketPingMs: 1500 });
    const silent = session({ url: nginx.url, tls: { ca: certs.ca }, keepaliveSec: 60, websocketPingMs: 0 });
    pinging.s.start();
    silent.s.start();
    await Promise.all([up(pinging.s), up(silent.s)]);
    await sleep(9000);
    console.log(`wss via nginx (read timeout 4 s), 9 s idle: with WebSocket pings every 1.5 s ${pinging.downs.length} cuts (${pinging.s.websocketStats.pings} pings, last pong ${pinging.s.websocketStats.lastPongRttMs} ms); without ${silent.downs.length} cuts`);
    expect(pinging.downs).toEqual([]);
    expect(pinging.s.websocketStats.pings).toBeGreaterThanOrEqual(4);
    expect(pinging.s.websocketStats.lastPongRttMs).not.toBeNull();
    expect(silent.downs.length).toBeGreaterThanOrEqual(1);
    await pinging.s.stop();
    await silent.s.stop();
  });

  it('SIGHUP reads rotated TLS files again: the next connection uses them (here a CA that fails), the board link never drops', async () => {
    const board = await serveDeviceOverTcp();
    const proxy = await startTcpProxy(tlsPort);
    const caPath = path.join(certs.dir, 'rotating-ca.pem');
    copyFileSync(certs.ca, caPath);
    const d = new DaemonProcess({
      broker: { url: `mqtts://localhost:${proxy.port}`, username: USER, password: PASSWORD, tls: { ca: caPath }, backoff: { initialMs: 100, maxMs: 500 } },
      queue: { dir: './q' },
      control: { enabled: false },
      devices: [{ id: 'uno-tls', port: board.target, keepalive: { intervalMs: 250, misses: 4 } }],
    });
    d.start();
    const connects = () => d.logs.filter((l) => l.msg === 'connected to the MQTT broker').length;
    try {
      await d.waitForLog((l) => /^device ready/.test(String(l.msg)), 15_000);
      await waitFor(() => connects() >= 2, { what: 'both sessions connected', timeoutMs: 10_000 });
      // Rotated to a CA that does not sign the broker: read on SIGHUP, used from the next connection.
      copyFileSync(certs.otherCa, caPath);
      d.hup();
      await d.waitForLog((l) => /TLS files reloaded .*new ones are used/.test(String(l.msg)), 5000);
      proxy.cut();
      await d.waitForLog((l) => l.level >= 50 && /TLS/.test(String(l.msg)), 10_000);
    } finally {
      expect(await d.stop()).toBe(0);
      await proxy.close();
      await board.close();
    }
    // The board's own link did not notice any of it.
    expect(d.logs.filter((l) => /^device (lost|init)/.test(String(l.msg)) && l.cause !== 'link up')).toEqual([]);
  });

  function daemon(name: string, broker: Record<string, unknown>): DaemonProcess {
    const d = new DaemonProcess({
      broker,
      queue: { dir: './q' },
      control: { enabled: false },
      devices: [{ id: 'uno-a', port: 'tcp://127.0.0.1:9' }, { id: 'uno-b', port: 'tcp://127.0.0.1:10' }],
    });
    mkdirSync(path.join(d.dir, 'q'), { recursive: true });
    void name;
    return d;
  }

  for (const [name, brokerConfig, cause] of [
    ['a wrong CA', () => ({ url: `mqtts://127.0.0.1:${tlsPort}`, username: USER, password: PASSWORD, tls: { ca: certs.otherCa } }), /TLS: the broker's certificate .*CA we (do not )?trust/],
    ['a wrong password', () => ({ url: `mqtts://127.0.0.1:${tlsPort}`, username: USER, password: 'wrong-Secret-42', tls: { ca: certs.ca } }), /refused the (username or password|login)/],
    ['a wrong CA over wss://', () => ({ url: nginx.url, username: USER, password: PASSWORD, tls: { ca: certs.otherCa } }), /TLS: the broker's certificate .*CA we (do not )?trust/],
    ['a wrong password over wss://', () => ({ url: nginx.url, username: USER, password: 'wrong-Secret-42', tls: { ca: certs.ca } }), /refused the (username or password|login)/],
  ] as const) {
    it(`the real daemon with ${name}: one ERROR line (three sessions) with the cause and the fix, slow retries, no credentials printed`, async () => {
      const d = daemon(name, brokerConfig());
      d.start();
      try {
        await d.waitForLog((l) => l.level >= 50, 10_000);
        await sleep(2500);
      } finally {
        await d.stop();
      }
      const errors = d.logs.filter((l) => l.level >= 50);
      console.log(`${name}: ${errors.length} ERROR line: ${errors[0]?.msg}`);
      expect(errors).toHaveLength(1);
      expect(errors[0]!.msg).toMatch(cause);
      expect(errors[0]!.msg).toMatch(/Fix: .*retrying every 60 s/);
      // No quick retry loop: each of the three sessions tried once in these seconds.
      expect(d.logs.filter((l) => /MQTT reconnect in/.test(l.msg ?? '')).every((l) => (l.delayMs as number) === 60_000)).toBe(true);
      expect(d.stdout + d.stderr).not.toContain(PASSWORD);
      expect(d.stdout + d.stderr).not.toContain('wrong-Secret-42');
    });
  }
});

describe('tether daemon --check reads the broker TLS files', () => {
  const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));
  let certs: TestCerts;
  let dir: string;
  beforeAll(() => {
    certs = makeTestCerts();
    dir = mkdtempSync(path.join(os.tmpdir(), 'tether-check-'));
    chmodSync(dir, 0o755);
  });
  afterAll(() => {
    certs?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  function check(tls: Record<string, unknown>, as?: { uid: number; gid: number }) {
    const config = path.join(dir, `tether-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(
      config,
      `broker:\n  url: mqtts://127.0.0.1:8883\n  username: gw\n  password: ${PASSWORD}\n  tls: ${JSON.stringify(tls)}\ndevices:\n  - { id: uno, port: 'tcp://127.0.0.1:2000' }\n`,
      { mode: 0o644 },
    );
    const r = spawnSync(process.execPath, [CLI, 'daemon', '--config', config, '--check'], { encoding: 'utf8', ...as });
    return { code: r.status, out: `${r.stdout}${r.stderr}`.trim() };
  }

  it('a good CA passes', () => {
    expect(check({ ca: certs.ca })).toMatchObject({ code: 0 });
  });

  it('a missing CA file, a directory, a file without a certificate, a key that does not match: exit 78, one line each naming the key and the file, no password', () => {
    const missing = path.join(dir, 'nope.pem');
    let r = check({ ca: missing });
    console.log(`--check, missing CA: ${r.out}`);
    expect(r.code).toBe(78);
    expect(r.out).toContain(`broker.tls.ca: file not found (${missing})`);
    r = check({ ca: dir });
    expect(r.out).toContain(`broker.tls.ca: is a directory, not a file (${dir})`);
    const junk = path.join(dir, 'junk.pem');
    writeFileSync(junk, 'hello\n');
    r = check({ ca: junk });
    expect(r.out).toContain('broker.tls.ca: no PEM certificate in it');
    r = check({ ca: certs.ca, cert: certs.serverCert, key: path.join(certs.dir, 'other-ca.key') });
    expect(r.code).toBe(78);
    expect(r.out).toContain('broker.tls.key: does not match the certificate in broker.tls.cert');
    expect(r.out).not.toContain(PASSWORD);
  });

  it('an unreadable CA file (0600, another owner): exit 78 with the reason', () => {
    const secret = path.join(dir, 'ca-0600.pem');
    writeFileSync(secret, '');
    chmodSync(secret, 0o600);
    // As root every file is readable: check as nobody then (the daemon's usual, unprivileged case).
    const root = process.getuid?.() === 0;
    if (!root) chmodSync(secret, 0o000);
    const r = check({ ca: secret }, root ? { uid: 65534, gid: 65534 } : undefined);
    console.log(`--check, unreadable CA: ${r.out}`);
    expect(r.code).toBe(78);
    expect(r.out).toMatch(/broker\.tls\.ca: not readable by this user \(uid \d+\)/);
  });

});
