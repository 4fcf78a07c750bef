import { describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { ProtocolNegotiation } from '../../host/mqtt/protocol-negotiation.ts';

const A = 'mqtt://a:1883';
const B = 'mqtt://b:1883';
const refused = { kind: 'refused', detail: 'Connection refused: Unacceptable protocol version' } as const;
const closed = { kind: 'closed-before-connack' } as const;

describe('ProtocolNegotiation (auto)', () => {
  it('MQTT 5 first; a refusal makes the next attempt 3.1.1 at once; the version in use is logged once per URL', () => {
    const n = new ProtocolNegotiation('auto');
    const log = new RecordingLogger();
    expect(n.versionFor(A)).toBe(5);
    expect(n.attemptEnded(A, 5, refused)).toEqual({ retryNow: true });
    expect(n.versionFor(A)).toBe(4);
    expect(n.versionFor(B)).toBe(5); // per URL
    n.connected(A, 4, log);
    n.connected(A, 4, log); // a second session of the same gateway: no second line
    expect(log.records.filter((r) => r.level === 'info').map((r) => r.msg)).toEqual([
      'the MQTT broker at mqtt://a:1883 does not accept MQTT 5 (CONNACK: Connection refused: Unacceptable protocol version): using MQTT 3.1.1',
    ]);
    expect(n.versionFor(A)).toBe(4);
    n.connected(B, 5, log);
    expect(log.records.at(-1)!.msg).toBe('speaking MQTT 5 with the MQTT broker at mqtt://b:1883');
  });

  it('a close without CONNACK counts as a refusal (RabbitMQ 3.x); a network failure says nothing', () => {
    const n = new ProtocolNegotiation('auto');
    expect(n.attemptEnded(A, 5, { kind: 'other' })).toEqual({ retryNow: false });
    expect(n.versionFor(A)).toBe(5);
    expect(n.attemptEnded(A, 5, closed)).toEqual({ retryNow: true });
    expect(n.versionFor(A)).toBe(4);
  });

  it('both versions refused: one failure naming both, then it starts over from MQTT 5', () => {
    const n = new ProtocolNegotiation('auto');
    n.attemptEnded(A, 5, closed);
    const verdict = n.attemptEnded(A, 4, closed);
    expect(verdict.retryNow).toBe(false);
    expect(verdict.failure).toMatchObject({ kind: 'protocol', key: `protocol:${A}:both`, slow: false });
    expect(verdict.failure!.cause).toMatch(/accepted neither MQTT 5 nor MQTT 3\.1\.1/);
    expect(verdict.failure!.cause).toMatch(/MQTT 5: it closed the connection.*MQTT 3\.1\.1: it closed the connection/);
    expect(n.versionFor(A)).toBe(5);
  });

  it('a broker that spoke 5 and now refuses it (replaced) is negotiated again', () => {
    const n = new ProtocolNegotiation('auto');
    n.connected(A, 5, new RecordingLogger());
    expect(n.attemptEnded(A, 5, refused)).toEqual({ retryNow: true });
    expect(n.versionFor(A)).toBe(4);
  });
  it('a broker that spoke a version and now closes without CONNACK is away (an outage behind a proxy), not refusing: no downgrade, no failure', () => {
    const n = new ProtocolNegotiation('auto');
    n.connected(A, 5, new RecordingLogger());
    for (let i = 0; i < 5; i++) expect(n.attemptEnded(A, 5, closed)).toEqual({ retryNow: false });
    expect(n.versionFor(A)).toBe(5);
    // The same after a fallback to 3.1.1 (RabbitMQ): a node going away does not undo it.
    n.attemptEnded(B, 5, closed);
    n.connected(B, 4, new RecordingLogger());
    expect(n.attemptEnded(B, 4, closed)).toEqual({ retryNow: false });
    expect(n.versionFor(B)).toBe(4);
  });
});

describe('ProtocolNegotiation (fixed)', () => {
  it('never changes the version; a refusal is a config failure that says what to set', () => {
    const n = new ProtocolNegotiation(5);
    const verdict = n.attemptEnded(A, 5, refused);
    expect(verdict.retryNow).toBe(false);
    expect(verdict.failure).toMatchObject({ kind: 'protocol', slow: true });
    expect(verdict.failure!.cause).toMatch(/does not accept MQTT 5 \(CONNACK: Connection refused: Unacceptable protocol version\)/);
    expect(verdict.failure!.fix).toMatch(/protocolVersion to 'auto'/);
    expect(n.versionFor(A)).toBe(5);
    // A close without CONNACK may be a broker that is starting, or a proxy with no broker behind it:
    // said only after 3 in a row, and retried on the usual backoff.
    const four = new ProtocolNegotiation(4);
    expect(four.attemptEnded(A, 4, closed).failure).toBeUndefined();
    expect(four.attemptEnded(A, 4, closed).failure).toBeUndefined();
    const third = four.attemptEnded(A, 4, closed).failure;
    expect(third).toMatchObject({ slow: false });
    expect(third!.cause).toMatch(/does not seem to accept MQTT 3\.1\.1 .*3 times in a row; a proxy with no broker behind it does that too/);
    four.connected(A, 4, new RecordingLogger());
    expect(four.attemptEnded(A, 4, closed).failure).toBeUndefined(); // counted again from a connect
  });
});
