import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { LogRateLimiter } from '../../host/log/log-rate-limiter.ts';

describe('LogRateLimiter', () => {
  it('allows a burst per key and window, counts what it holds back, and reports it with the next allowed line', () => {
    const clock = new ManualClock();
    const limiter = new LogRateLimiter(clock, { windowMs: 60_000, burst: 3 });
    const results = Array.from({ length: 10 }, () => limiter.allow('a'));
    expect(results.filter((r) => r.ok)).toHaveLength(3);
    expect(results.at(-1)).toEqual({ ok: false, suppressed: 7 });
    expect(limiter.allow('b')).toEqual({ ok: true, suppressed: 0 }); // keys are independent
    clock.advance(60_000);
    expect(limiter.allow('a')).toEqual({ ok: true, suppressed: 7 });
    expect(limiter.allow('a')).toEqual({ ok: true, suppressed: 0 });
  });

  it('a flood of 100,000 in one window costs burst lines', () => {
    const limiter = new LogRateLimiter(new ManualClock(), { windowMs: 60_000, burst: 10 });
    let lines = 0;
    for (let i = 0; i < 100_000; i++) if (limiter.allow('x').ok) lines++;
    expect(lines).toBe(10);
  });
});
