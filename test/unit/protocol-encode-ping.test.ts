import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, encodePingFrame, ProtocolError } from '../../shared/protocol/index.ts';

describe('encodePingFrame (the PING fast path)', () => {
  it('gives the same bytes as encodeFrame for every seq edge and lease size', () => {
    const seqs = [0, 1, 127, 128, 300, 8191, 16383];
    const leases = [0, 1, 127, 128, 4000, 16384, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 0xffffffff];
    for (const seq of seqs) {
      for (const leaseMs of leases) {
        const fast = encodePingFrame(seq, leaseMs);
        expect(Array.from(fast), `seq ${seq} lease ${leaseMs}`).toEqual(Array.from(encodeFrame({ type: 'ping', seq, leaseMs })));
        const decoded = decodeFrame(fast);
        expect(decoded.ok && decoded.message).toEqual({ type: 'ping', seq, leaseMs });
      }
    }
  });

  it('refuses what the wire cannot carry, as encodeFrame does', () => {
    for (const [seq, lease] of [
      [-1, 0],
      [16384, 0],
      [1.5, 0],
      [0, -1],
      [0, 2 ** 32],
      [0, Number.NaN],
    ] as const) {
      expect(() => encodePingFrame(seq, lease)).toThrow(ProtocolError);
      expect(() => encodeFrame({ type: 'ping', seq, leaseMs: lease })).toThrow(ProtocolError);
    }
  });
});
