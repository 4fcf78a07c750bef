import { describe, expect, it } from 'vitest';
import { classifyBrokerError, ConfigFailureLog } from '../../host/mqtt/broker-errors.ts';

const err = (message: string, code?: unknown) => Object.assign(new Error(message), code === undefined ? {} : { code });

describe('which broker failures are config errors', () => {
  it('CONNACK refusals (MQTT 5 134/135, 3.1.1 4/5) are auth failures with a fix naming the settings', () => {
    for (const code of [134, 4]) expect(classifyBrokerError(err('Connection refused: Bad User Name or Password', code), 'mqtt://h')).toMatchObject({ kind: 'auth', key: 'auth:bad-credentials' });
    for (const code of [135, 5]) {
      const f = classifyBrokerError(err('Connection refused: Not authorized', code), 'mqtt://h')!;
      expect(f.kind).toBe('auth');
      expect(f.fix).toMatch(/broker\.username.*passwordFile/);
    }
  });

  it('certificate failures are TLS failures, each with its own cause and fix', () => {
    expect(classifyBrokerError(err('unable to verify the first certificate', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'mqtts://h')).toMatchObject({ kind: 'tls', fix: expect.stringMatching(/broker\.tls\.ca/) });
    expect(classifyBrokerError(err("Hostname/IP does not match certificate's altnames", 'ERR_TLS_CERT_ALTNAME_INVALID'), 'mqtts://broker.lan:8883')!.cause).toMatch(/"broker\.lan"/);
    expect(classifyBrokerError(err('wrong version number', 'ERR_SSL_WRONG_VERSION_NUMBER'), 'mqtts://h')!.fix).toMatch(/mqtt:\/\//);
  });

  it('a refused WebSocket upgrade (HTTP 4xx) is an endpoint error; network trouble is not a config error', () => {
    expect(classifyBrokerError(err('Unexpected server response: 404'), 'wss://h/mqtt')).toMatchObject({ kind: 'endpoint', key: 'ws:404' });
    for (const e of [err('connect ECONNREFUSED', 'ECONNREFUSED'), err('read ECONNRESET', 'ECONNRESET'), err('Unexpected server response: 502'), err('Connection refused: Server unavailable', 3), null]) {
      expect(classifyBrokerError(e, 'mqtt://h')).toBeNull();
    }
  });

  it('never repeats a URL or its credentials', () => {
    const f = classifyBrokerError(err("Hostname/IP does not match certificate's altnames", 'ERR_TLS_CERT_ALTNAME_INVALID'), 'mqtts://user:s3cret@h:8883')!;
    expect(JSON.stringify(f)).not.toContain('s3cret');
  });

  it('ConfigFailureLog: once per failure until a connection succeeds', () => {
    const log = new ConfigFailureLog();
    const f = classifyBrokerError(err('x', 135), 'mqtt://h')!;
    expect([log.firstTime(f), log.firstTime(f), log.firstTime(f)]).toEqual([true, false, false]);
    log.cleared();
    expect(log.firstTime(f)).toBe(true);
  });
});
