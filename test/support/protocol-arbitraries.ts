import fc from 'fast-check';

/** Any u32 value. */
export const u32Arb = fc.integer({ min: 0, max: 0xffffffff });

/** A PONG or a BEAT (the same fields), any valid values. */
export function heartbeatArb<T extends 'pong' | 'beat'>(type: T) {
  return fc.record({
    type: fc.constant(type),
    seq: fc.integer({ min: 0, max: 0x3fff }),
    uptimeMs: u32Arb,
    bootId: u32Arb,
    leaseActive: fc.boolean(),
    sleepPending: fc.boolean(),
    stateValid: fc.boolean(),
    hostWasLost: fc.boolean(),
    leaseRemainingMs: u32Arb,
  });
}
