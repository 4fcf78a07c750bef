import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { BrokerSession } from '../../host/mqtt/broker-session.ts';
import { StatusModel } from '../../host/status-page/status-model.ts';
import { freePort } from '../support/free-port.ts';
import { startMosquitto, type RunningMosquitto } from '../support/mosquitto.ts';
import { waitFor } from '../support/wait-for.ts';

// Several broker URLs (broker.urls), tried in turn: two real Mosquittos and a port where nothing
// listens. (The same on a RabbitMQ cluster, with the board's state republished: broker-cluster.test.ts.)

describe('BrokerSession with several broker URLs', () => {
  let a: RunningMosquitto;
  let b: RunningMosquitto;
  let dead: string;
  const sessions: BrokerSession[] = [];

  beforeAll(async () => {
    a = await startMosquitto();
    b = await startMosquitto();
    dead = `mqtt://127.0.0.1:${await freePort()}`;
  });
  afterEach(async () => {
    for (const s of sessions.splice(0)) await s.stop();
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  function session(urls: string[], log = new RecordingLogger()): BrokerSession {
    const s = new BrokerSession({ url: urls, clientId: `urls-${process.pid}-${sessions.length}`, keepaliveSec: 5, backoff: { initialMs: 50, maxMs: 200 }, logger: log });
    sessions.push(s);
    return s;
  }

  it('a URL that refuses the connection is skipped for the next one', async () => {
    const s = session([dead, a.url]);
    s.start();
    await waitFor(() => s.connected, { timeoutMs: 5000, what: 'connected' });
    expect(s.url).toBe(a.url);
    expect(s.urls).toEqual([dead, a.url]);
  });

  it('the loss of the connected broker moves the session to the next URL (not back to the dead one), and around again', async () => {
    const log = new RecordingLogger();
    const s = session([a.url, b.url], log);
    s.start();
    await waitFor(() => s.connected, { timeoutMs: 5000, what: 'connected to a' });
    expect(s.url).toBe(a.url);
    const killedAt = performance.now();
    await a.kill9();
    await waitFor(() => s.connected && s.url === b.url, { timeoutMs: 5000, what: 'connected to b' });
    console.log(`broker.urls: kill -9 of the connected Mosquitto, connected to the next one ${Math.round(performance.now() - killedAt)} ms later`);
    expect(s.stats.connects).toBe(2);
    // a back, b gone: around to a.
    await a.restart();
    await b.kill9();
    await waitFor(() => s.connected && s.url === a.url, { timeoutMs: 5000, what: 'connected to a again' });
    await b.restart();
    expect(log.records.filter((r) => r.level === 'error')).toEqual([]);
  });

  it('a gateway on the second URL: its idle probe and its status page use that one, not the first listed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-urls-'));
    const config = validateConfig({
      gateway: { id: 'gw-urls' },
      broker: { urls: [dead, b.url], keepaliveSec: 5, backoff: { initialMs: 50, maxMs: 200 }, keepaliveTraffic: { learn: false } },
      queue: { dir: join(dir, 'queue') },
      homeassistant: { enabled: false },
      // A board nobody answers for: the gateway's own session is what is looked at here.
      devices: [{ id: 'nobody', port: dead.replace('mqtt:', 'tcp:') }],
    });
    const gateway = await Gateway.start(config, new RecordingLogger(), { env: {} });
    try {
      await waitFor(() => gateway.mqtt.connected, { timeoutMs: 5000, what: 'the gateway session connected' });
      expect(gateway.brokerUrlInUse).toBe(b.url);
      const probe = await gateway.probeIdle(300);
      expect(probe).toEqual({ outcome: 'survived', idleMs: expect.any(Number) }); // on the first URL: refused, 'failed'
      const status = new StatusModel(gateway, { heartbeatMs: 15_000, clock: gateway.clock });
      expect(status.snapshot().gateway).toMatchObject({ brokerConnected: true, brokerUrl: b.url });
    } finally {
      await gateway.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
