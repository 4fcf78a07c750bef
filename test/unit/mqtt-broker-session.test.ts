import { describe, expect, it } from 'vitest';
import { BrokerSession, ownBuffer } from '../../host/mqtt/broker-session.ts';

const base = { url: 'mqtt://127.0.0.1:1', clientId: 'unit' };

describe('ownBuffer', () => {
  it('copies a payload kept for the session into memory of its own, not a slice of the shared pool', () => {
    const pooled = Buffer.from('lost');
    expect(pooled.buffer.byteLength).toBeGreaterThan(pooled.length); // a slice of Node's 8 KiB pool
    for (const payload of ['lost', pooled]) {
      const own = ownBuffer(payload);
      expect(own.toString()).toBe('lost');
      expect(own.buffer.byteLength).toBe(4);
    }
  });
});

describe('BrokerSession (no broker)', () => {
  it('rejects nonsense options at construction', () => {
    expect(() => new BrokerSession({ ...base, keepaliveSec: 0 })).toThrow(/keepaliveSec/);
    expect(() => new BrokerSession({ ...base, keepaliveSec: 1.5 })).toThrow(/keepaliveSec/);
    expect(() => new BrokerSession({ ...base, pingRespTimeoutMs: -1 })).toThrow(/pingRespTimeoutMs/);
    expect(() => new BrokerSession({ ...base, protocolVersion: 3 as 4 })).toThrow(/protocolVersion/);
    expect(() => new BrokerSession({ ...base, clientId: '' })).toThrow(/clientId/);
    expect(() => new BrokerSession({ ...base, backoff: { initialMs: 500, maxMs: 100 } })).toThrow(/maxMs/);
  });

  it('reads TLS material from paths and says which file it could not read', () => {
    expect(() => new BrokerSession({ ...base, tls: { ca: '/nonexistent/ca.pem' } })).toThrow(/TLS CA file \/nonexistent\/ca\.pem/);
    // PEM text is used as it is (no file access).
    expect(() => new BrokerSession({ ...base, tls: { ca: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n' } })).not.toThrow();
  });

  it('publish() rejects at once, with a clear message, before start and after stop', async () => {
    const s = new BrokerSession(base);
    expect(s.connected).toBe(false);
    await expect(s.publish('a/b', 'x', { qos: 1, retain: false })).rejects.toThrow(/unit is not connected to mqtt:\/\/127\.0\.0\.1:1: publish to a\/b not sent/);
    await s.stop();
    await expect(s.publish('a/b', 'x', { qos: 0, retain: false })).rejects.toThrow(/not connected/);
    expect(() => s.start()).toThrow(/start\(\)/);
    expect(s.stats).toMatchObject({ connects: 0, reconnects: 0, halfOpenDetections: 0, lastPingRttMs: null, drops: { closed: 0, 'half-open': 0 }, keepaliveBytes: 0, pingIntervalMs: 30_000 });
  });

  it('subscribe() while not connected is remembered and resolves', async () => {
    const s = new BrokerSession(base);
    await expect(s.subscribe('a/#', 1)).resolves.toBeUndefined();
    await s.stop();
  });
});
