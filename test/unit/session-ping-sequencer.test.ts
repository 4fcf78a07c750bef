import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PingSequencer, SEQ_MODULUS, type PongMatch } from '../../host/session/ping-sequencer.ts';

describe('PingSequencer', () => {
  it('issues consecutive seqs and matches PONGs with their RTT', () => {
    const s = new PingSequencer();
    expect(s.next(1000)).toBe(0);
    expect(s.next(2000)).toBe(1);
    expect(s.unanswered).toBe(2);
    expect(s.match(0, 1030)).toEqual({ rttMs: 30 });
    expect(s.match(1, 2045)).toEqual({ rttMs: 45 });
    expect(s.unanswered).toBe(0);
  });

  it('wraps 16383 -> 0 and matches across the wrap', () => {
    expect(SEQ_MODULUS).toBe(16384);
    const s = new PingSequencer({ start: 16382 });
    expect([s.next(0), s.next(10), s.next(20), s.next(30)]).toEqual([16382, 16383, 0, 1]);
    expect(s.match(16382, 5)).toEqual({ rttMs: 5 });
    expect(s.match(16383, 15)).toEqual({ rttMs: 5 });
    expect(s.match(0, 27)).toEqual({ rttMs: 7 });
    // 16383 is behind 0 across the wrap: a second PONG for it is a duplicate, not reordered.
    expect(s.match(16383, 28)).toEqual({ unexpected: 'duplicate' });
    expect(s.match(1, 31)).toEqual({ rttMs: 1 });
  });

  it('keeps matching over many wraps (a long session)', () => {
    const s = new PingSequencer();
    const wrong: number[] = [];
    for (let i = 0; i < 3 * SEQ_MODULUS + 10; i++) {
      const seq = s.next(i * 1000);
      const match = s.match(seq, i * 1000 + 12);
      if (seq !== i % SEQ_MODULUS || match.rttMs !== 12) wrong.push(i);
    }
    expect(wrong).toEqual([]);
    expect(s.tracked).toBe(64);
  });

  it('a seq never sent is unknown', () => {
    const s = new PingSequencer();
    expect(s.match(5, 0)).toEqual({ unexpected: 'unknown' });
    s.next(0);
    s.next(1);
    expect(s.match(2, 2)).toEqual({ unexpected: 'unknown' }); // the next one, not sent yet
    expect(s.match(9999, 2)).toEqual({ unexpected: 'unknown' });
    expect(s.match(16383, 2)).toEqual({ unexpected: 'unknown' }); // "before" 0, but nothing was sent before 0
  });

  it('a seq that is not a u14 is unknown rather than an exception', () => {
    const s = new PingSequencer();
    s.next(0);
    for (const seq of [-1, 16384, 1.5, Number.NaN]) expect(s.match(seq, 1)).toEqual({ unexpected: 'unknown' });
  });

  it('a PONG answered twice is a duplicate', () => {
    const s = new PingSequencer();
    const seq = s.next(0);
    expect(s.match(seq, 10)).toEqual({ rttMs: 10 });
    expect(s.match(seq, 20)).toEqual({ unexpected: 'duplicate' });
  });

  it('a reordered PONG (older than an answered newer PING) is matched without an RTT', () => {
    const s = new PingSequencer();
    const a = s.next(0);
    const b = s.next(1000);
    expect(s.match(b, 1010)).toEqual({ rttMs: 10 });
    const late = s.match(a, 1020);
    expect(late).toEqual({ reordered: true });
    expect('unexpected' in late).toBe(false);
    expect(s.match(a, 1030)).toEqual({ unexpected: 'duplicate' });
    // The newer in-order PONGs still give RTTs.
    const c = s.next(2000);
    expect(s.match(c, 2015)).toEqual({ rttMs: 15 });
  });

  it('PINGs that fell out of the window are stale, and memory stays bounded', () => {
    const s = new PingSequencer({ window: 4 });
    const seqs = Array.from({ length: 10 }, (_, i) => s.next(i));
    expect(s.tracked).toBe(4);
    expect(s.match(seqs[0]!, 20)).toEqual({ unexpected: 'stale' });
    expect(s.match(seqs[5]!, 20)).toEqual({ unexpected: 'stale' });
    expect(s.match(seqs[6]!, 20)).toEqual({ rttMs: 14 });
  });

  it('reset() forgets PINGs (their PONGs become stale) and keeps numbering', () => {
    const s = new PingSequencer();
    const old = s.next(0);
    s.reset();
    expect(s.tracked).toBe(0);
    expect(s.match(old, 5)).toEqual({ unexpected: 'stale' });
    const fresh = s.next(10);
    expect(fresh).toBe(old + 1);
    expect(s.match(fresh, 12)).toEqual({ rttMs: 2 });
  });

  it('never reports a negative RTT', () => {
    const s = new PingSequencer();
    const seq = s.next(1000);
    expect(s.match(seq, 999)).toEqual({ rttMs: 0 });
  });

  it('rejects bad options and non-finite times', () => {
    expect(() => new PingSequencer({ window: 0 })).toThrow(/window must be an integer in 1..8192/);
    expect(() => new PingSequencer({ window: 8193 })).toThrow(RangeError);
    expect(() => new PingSequencer({ start: 16384 })).toThrow(/start must be an integer in 0..16383/);
    const s = new PingSequencer();
    expect(() => s.next(Number.NaN)).toThrow(RangeError);
    expect(() => s.match(0, Infinity)).toThrow(RangeError);
  });

  it('arbitrary next/match/reset never throw, stay bounded and agree with a reference model (property)', () => {
    type Op = { kind: 'next' } | { kind: 'reset' } | { kind: 'match'; back: number } | { kind: 'matchAny'; seq: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 4, arbitrary: fc.constant({ kind: 'next' as const }) },
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('match' as const), back: fc.integer({ min: 0, max: 100 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('matchAny' as const), seq: fc.integer({ min: -2, max: SEQ_MODULUS + 1 }) }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 16 }),
        fc.integer({ min: 0, max: SEQ_MODULUS - 1 }),
        fc.array(op, { maxLength: 200 }),
        (window, start, ops) => {
          const s = new PingSequencer({ window, start });
          // Model: every PING ever sent, by unwrapped index.
          const sends: Array<{ seq: number; at: number; answered: boolean }> = [];
          let forgottenBefore = 0;
          let newestAnswered = -1;
          let now = 0;
          const expected = (seq: number): PongMatch => {
            let i = sends.length - 1;
            while (i >= 0 && sends[i]!.seq !== seq) i--;
            if (i < 0) return { unexpected: 'unknown' };
            if (i < Math.max(forgottenBefore, sends.length - window)) {
              return { unexpected: sends.length - 1 - i < SEQ_MODULUS / 2 ? 'stale' : 'unknown' };
            }
            const ping = sends[i]!;
            if (ping.answered) return { unexpected: 'duplicate' };
            ping.answered = true;
            if (i < newestAnswered) return { reordered: true };
            newestAnswered = i;
            return { rttMs: now - ping.at };
          };
          for (const o of ops) {
            now += 7;
            if (o.kind === 'next') {
              const seq = s.next(now);
              expect(seq).toBe((start + sends.length) % SEQ_MODULUS);
              sends.push({ seq, at: now, answered: false });
            } else if (o.kind === 'reset') {
              s.reset();
              forgottenBefore = sends.length;
              newestAnswered = -1;
            } else {
              const seq = o.kind === 'match' ? (start + sends.length - 1 - o.back + 10 * SEQ_MODULUS) % SEQ_MODULUS : o.seq;
              const valid = Number.isInteger(seq) && seq >= 0 && seq < SEQ_MODULUS;
              const result = s.match(seq, now);
              expect(result).toEqual(valid ? expected(seq) : { unexpected: 'unknown' });
            }
            expect(s.tracked).toBeLessThanOrEqual(window);
            expect(s.unanswered).toBeLessThanOrEqual(s.tracked);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
