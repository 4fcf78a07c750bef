import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { describeDevice, keepaliveNode, type HomieProperty } from '../../host/homie/homie-description.ts';
import { homieTopics, parseSetTopic } from '../../host/homie/homie-topics.ts';
import { MAX_SET_PAYLOAD_BYTES, parseSetPayload } from '../../host/homie/set-payload.ts';

const onOff: HomieProperty = { name: 'On', datatype: 'boolean', settable: true };
const level: HomieProperty = { name: 'Level', datatype: 'integer', format: '0:255', settable: true };
const readOnly: HomieProperty = { name: 'Value', datatype: 'integer', format: '0:1023', settable: false };
const text = (s: string) => Buffer.from(s);

describe('Homie 5 topics', () => {
  it('builds and parses /set topics', () => {
    expect(homieTopics.set('uno-1', 'status', 'on')).toBe('homie/5/uno-1/status/on/set');
    expect(parseSetTopic('uno-1', 'homie/5/uno-1/status/on/set')).toEqual({ node: 'status', property: 'on' });
    expect(parseSetTopic('uno-1', 'homie/5/uno-2/status/on/set')).toBeNull();
    expect(parseSetTopic('uno-1', 'homie/5/uno-1/status/on')).toBeNull();
    expect(parseSetTopic('uno-1', 'homie/5/uno-1/a/b/c/set')).toBeNull();
  });

  it('versions the description by its content', () => {
    const a = describeDevice({ name: 'a', nodes: { tether: keepaliveNode } });
    const b = describeDevice({ name: 'a', nodes: { tether: keepaliveNode } });
    const c = describeDevice({ name: 'b', nodes: { tether: keepaliveNode } });
    expect(a.homie).toBe('5.0');
    expect(a.version).toBe(b.version);
    expect(a.version).not.toBe(c.version);
  });
});

describe('/set payload validation', () => {
  it('accepts exactly true/false for booleans and in-range integers', () => {
    expect(parseSetPayload(onOff, text('true'))).toEqual({ ok: true, value: true });
    expect(parseSetPayload(onOff, text('false'))).toEqual({ ok: true, value: false });
    expect(parseSetPayload(level, text('255'))).toEqual({ ok: true, value: 255 });
  });

  it.each([
    ['wrong type for a boolean', onOff, text('1'), /expected true or false/],
    ['wrong case', onOff, text('TRUE'), /expected true or false/],
    ['out of range', level, text('256'), /expected <= 255/],
    ['negative', level, text('-1'), /expected >= 0/],
    ['not an integer', level, text('12.5'), /expected an integer/],
    ['oversize', level, Buffer.alloc(MAX_SET_PAYLOAD_BYTES + 1, 0x31), /too long/],
    ['invalid UTF-8', onOff, Buffer.from([0x74, 0xff, 0xfe]), /not valid UTF-8/],
    ['a read-only property', readOnly, text('5'), /not settable/],
  ])('rejects %s with a reason', (_what, property, payload, reason) => {
    const result = parseSetPayload(property, payload);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  });

  it('never throws and accepts only valid integers in range, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const result = parseSetPayload(level, bytes);
        if (result.ok) {
          expect(Number.isInteger(result.value)).toBe(true);
          expect(result.value as number).toBeGreaterThanOrEqual(0);
          expect(result.value as number).toBeLessThanOrEqual(255);
        }
      }),
    );
  });
});
