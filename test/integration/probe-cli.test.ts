import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveDeviceOverTcp, type DeviceOnTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { freePort } from '../support/free-port.ts';
import { startMiddleboxRelay, type MiddleboxRelay } from '../support/middlebox-relay.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { toolAvailable } from '../support/find-tool.ts';
import { startNginxWsProxy, type RunningNginx } from '../support/nginx.ts';

/** Debian's nginx; missing under CI=true, the tests below run and fail (the test script installs it). */
const haveNginx = toolAvailable('nginx', 'nginx');

const CLI = fileURLToPath(new URL('../../bin/tether.js', import.meta.url));

function probe(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'probe', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
  });
}

describe('tether probe <url>', () => {
  const stops: Array<() => Promise<void>> = [];
  let broker: RunningMosquitto;
  let nginx: RunningNginx | null = null;
  let board: DeviceOnTcp;
  let forgetting: MiddleboxRelay;

  beforeAll(async () => {
    const wsPort = await freePort();
    broker = await startMosquitto({ extraConfig: [`listener ${wsPort} 127.0.0.1`, 'protocol websockets'] });
    stops.push(() => broker.stop());
    if (haveNginx) {
      nginx = await startNginxWsProxy({ upstreamPort: wsPort, readTimeoutSec: 3 });
      stops.push(() => nginx!.stop());
    }
    board = await serveDeviceOverTcp();
    stops.push(() => board.close());
    forgetting = await startMiddleboxRelay({ targetPort: board.port, forgetIdleMs: 3000 });
    stops.push(() => forgetting.close());
  });
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  it.skipIf(!haveNginx)('a broker behind nginx (WebSocket, proxy_read_timeout 3 s): the close is timed to a few tenths of a second, the interval is below it, progress on stderr', async () => {
    const r = await probe(nginx!.url, '--max', '10s', '--json');
    console.log(`probe ${nginx!.url}: ${r.stdout.trim()} (${r.ms} ms)\n${r.stderr.trim()}`);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { verdict: string; diedMs: number; intervalMs: number };
    expect(result.verdict).toBe('closed');
    // nginx keeps a timer that would move by less than 300 ms (NGX_TIMER_LAZY_DELAY): it may cut up to 0.3 s early.
    expect(result.diedMs).toBeGreaterThan(2600);
    expect(result.diedMs).toBeLessThan(3700);
    expect(result.intervalMs).toBe(2000);
    expect(r.stderr).toMatch(/connected to ws:\/\/127\.0\.0\.1:\d+\/mqtt/);
    expect(r.stderr).toMatch(/idle 2\.0 s: still answers/);
    expect(r.stderr).toMatch(/closed after (2\.[6-9]|3\.\d) s idle/);
  });

  it('the broker itself (no middlebox): no idle timeout up to --max, the default keepalive is fine', async () => {
    const r = await probe(broker.url, '--max', '3s');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/no idle timeout up to 3\.0 s/);
    expect(r.stdout).toMatch(/default .*30 s.* is fine/);
  });

  it('a tcp:// bridge behind a relay that silently forgets connections idle 3 s: bracketed with fresh connections, the interval below it', async () => {
    const r = await probe(`tcp://127.0.0.1:${forgetting.port}`, '--max', '8s', '--timeout', '1s');
    console.log(`probe tcp:// (forgets after 3 s): ${r.stdout.trim()} (${r.ms} ms)\n${r.stderr.trim()}`);
    expect(r.code).toBe(0);
    const m = /idle timeout (\d+\.\d) s: the path silently forgets a connection idle for more than \d+\.\d s \(at most (\d+\.\d) s\)/.exec(r.stdout);
    expect(m).not.toBeNull();
    const [survived, died] = [Number(m![1]) * 1000, Number(m![2]) * 1000];
    expect(survived).toBeLessThanOrEqual(3100);
    expect(died).toBeGreaterThanOrEqual(2900);
    expect(r.stdout).toMatch(/keepalive\.intervalMs at most (1000|2000)/);
  });

  it('a bad url is a usage error; an unreachable bridge is one line and exit 1', async () => {
    expect((await probe('/dev/ttyACM0')).code).toBe(2);
    const r = await probe(`tcp://127.0.0.1:${await freePort()}`);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
