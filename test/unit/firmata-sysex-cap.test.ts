import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FirmataSysexCap } from '../../host/tether-io/firmata-sysex-cap.ts';

const run = (cap: FirmataSysexCap, ...chunks: number[][]) => {
  const out: number[] = [];
  const events = [];
  for (const c of chunks) {
    const r = cap.push(Uint8Array.from(c));
    out.push(...r.out);
    events.push(...r.events);
  }
  return { out, events };
};

describe('FirmataSysexCap', () => {
  it('passes Firmata messages and sysex up to the cap unchanged, a sysex only once whole', () => {
    const cap = new FirmataSysexCap(8);
    const analog = [0xe0, 0x12, 0x03];
    const sysex = [0xf0, 0x79, 2, 5, 0x41, 0, 0, 0xf7]; // exactly 8 bytes
    expect(run(cap, [...analog, ...sysex.slice(0, 3)]).out).toEqual(analog); // sysex held
    expect(cap.heldBytes).toBe(3);
    expect(run(cap, sysex.slice(3), [0x90, 1, 0]).out).toEqual([...sysex, 0x90, 1, 0]);
    expect(cap.stats).toEqual({ droppedBytes: 0, tooLong: 0, cutShort: 0 });
  });

  it('drops a sysex longer than the cap up to its F7 and counts it; what follows passes', () => {
    const cap = new FirmataSysexCap(8);
    const { out, events } = run(cap, [0xf0, 0x71, 1, 2, 3, 4, 5, 6, 7, 8, 9], [10, 11, 0xf7, 0xe0, 1, 2]);
    expect(out).toEqual([0xe0, 1, 2]);
    expect(cap.stats).toEqual({ droppedBytes: 14, tooLong: 1, cutShort: 0 });
    expect(events).toEqual([
      { kind: 'too-long', limit: 8 },
      { kind: 'dropped', bytes: 14, why: 'too-long' },
    ]);
    expect(cap.heldBytes).toBe(0);
  });

  it('a command byte ends a sysex (as in firmata.js): a short one is dropped as cut short, a long one ends its discarding there', () => {
    const cap = new FirmataSysexCap(8);
    expect(run(cap, [0xf0, 0x6b, 1, 0x90, 1, 0]).out).toEqual([0x90, 1, 0]);
    expect(run(cap, [0xf0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xf0, 0x79, 0xf7]).out).toEqual([0xf0, 0x79, 0xf7]);
    expect(cap.stats).toEqual({ droppedBytes: 13, tooLong: 1, cutShort: 1 });
  });

  it('10 MiB after an F0 and no F7: nothing passes, at most the cap is held', () => {
    const cap = new FirmataSysexCap();
    const chunk = new Uint8Array(64 * 1024).fill(0x01);
    let passed = 0;
    passed += cap.push(Uint8Array.of(0xf0)).out.length;
    for (let i = 0; i < 160; i++) passed += cap.push(chunk).out.length;
    expect(passed).toBe(0);
    expect(cap.heldBytes).toBe(0);
    expect(cap.stats.droppedBytes).toBe(1 + 160 * 64 * 1024);
    expect(cap.stats.tooLong).toBe(1);
  });

  it('the output does not depend on how the stream is cut into chunks', () => {
    const byte = fc.oneof(fc.constantFrom(0xf0, 0xf7, 0x90, 0xe0), fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0, max: 0xff }));
    fc.assert(
      fc.property(fc.array(byte, { maxLength: 200 }), fc.array(fc.nat(200), { maxLength: 10 }), (stream, cuts) => {
        const whole = run(new FirmataSysexCap(16), stream).out;
        const points = [...new Set(cuts.map((c) => Math.min(c, stream.length)))].sort((a, b) => a - b);
        const chunks = [0, ...points, stream.length].slice(1).map((end, i, ends) => stream.slice(i === 0 ? 0 : ends[i - 1], end));
        const cap = new FirmataSysexCap(16);
        expect(run(cap, ...chunks).out).toEqual(whole);
        expect(cap.heldBytes).toBeLessThan(16);
      }),
    );
  });
});
