import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { BridgeIdleLearner } from '../../host/link/bridge-idle-learner.ts';
import type { CutCause } from '../../host/mqtt/idle-timeout-learner.ts';

const PING = 20_000;

/**
 * The live link against a path on a ManualClock: it carries a PING after `learner.intervalMs`
 * of silence (the ping interval when nothing is to be kept awake). A path with idle timeout
 * `timeoutMs` cuts a link idle that long: a proxy closes it at that idle age, a relay or NAT
 * forgets it and the PING goes unanswered. `timeoutMs` may change during the run (`at` ms).
 */
function simulate(learner: BridgeIdleLearner, timeouts: Array<{ at: number; timeoutMs: number }>, kind: CutCause, forMs: number, clock = new ManualClock(0)) {
  const start = clock.now();
  const cuts: Array<{ at: number; idleMs: number }> = [];
  const intervals: number[] = [];
  let learnedAt: number | null = null;
  const timeoutNow = () => [...timeouts].reverse().find((t) => clock.now() - start >= t.at)!.timeoutMs;
  const cycle = () => {
    const idle = learner.intervalMs;
    const timeoutMs = timeoutNow();
    clock.setTimeout(
      () => {
        if (idle >= timeoutMs) {
          const seen = kind === 'closed' ? timeoutMs : idle;
          cuts.push({ at: clock.now() - start, idleMs: seen });
          learner.cut(seen, kind, clock.wallNow());
        } else {
          learner.survived(idle, clock.wallNow());
        }
        if (intervals.at(-1) !== learner.intervalMs) intervals.push(learner.intervalMs);
        if (learner.learned && learnedAt === null) learnedAt = clock.now() - start;
        if (!learner.learned) learnedAt = null;
        cycle();
      },
      kind === 'closed' ? Math.min(idle, timeoutMs) : idle,
    );
  };
  cycle();
  clock.advance(forMs);
  return { cuts, intervals, learnedAt };
}

describe('BridgeIdleLearner (the device leg: no probe connection, the search runs on the live link)', () => {
  it('with no cut, no traffic is added: the interval is the ping interval', () => {
    const learner = new BridgeIdleLearner({ pingIntervalMs: PING });
    const run = simulate(learner, [{ at: 0, timeoutMs: 3_600_000 }], 'half-open', 3_600_000);
    expect(run.cuts).toEqual([]);
    expect(learner.intervalMs).toBe(PING);
    expect(learner.learned).toBe(true);
  });

  for (const timeoutMs of [5000, 6000, 8000, 15_000]) {
    it(`a relay forgetting after ${timeoutMs / 1000} s idle under 20 s pings: at most two cuts (the first, one failed step), then none for a day; settles below the timeout at the last good value`, () => {
      const learner = new BridgeIdleLearner({ pingIntervalMs: PING });
      const run = simulate(learner, [{ at: 0, timeoutMs }], 'half-open', 23 * 3600_000);
      expect(run.cuts.length).toBeGreaterThanOrEqual(1);
      expect(run.cuts.length).toBeLessThanOrEqual(2);
      expect(run.cuts.at(-1)!.at).toBeLessThan(10 * 60_000);
      expect(learner.learned).toBe(true);
      expect(learner.intervalMs).toBeLessThan(timeoutMs);
      // Settled at a proven value within one step (x1.5) of the timeout, or the step below U - margin.
      expect(learner.intervalMs).toBeGreaterThanOrEqual(Math.min(timeoutMs / 1.5 - 100, timeoutMs - 1000 - 1000));
      expect(learner.intervalMs).toBeLessThanOrEqual(learner.safeMs!);
      // The first cut dropped it to the floor at once (nothing proven below 20 s).
      expect(run.intervals[0]).toBe(2000);
    });
  }

  it('a proxy (or ser2net `timeout`) that closes after 8 s idle: one cut, the interval below 8 s at once, no search', () => {
    const clock = new ManualClock(0);
    const learner = new BridgeIdleLearner({ pingIntervalMs: PING });
    const first = learner.cut(8000, 'closed', clock.wallNow());
    expect(first).toMatchObject({ intervalMs: 7000, previousMs: PING, timeoutMs: 8000, trial: false });
    expect(learner.learned).toBe(true);
    const run = simulate(learner, [{ at: 0, timeoutMs: 8000 }], 'closed', 6 * 3600_000, clock);
    expect(run.cuts).toEqual([]);
    expect(learner.intervalMs).toBe(7000);
  });

  it('cuts of a busy link (idle under the floor) teach nothing', () => {
    const learner = new BridgeIdleLearner({ pingIntervalMs: PING });
    expect(learner.cut(500, 'closed', 0)).toBeNull();
    expect(learner.intervalMs).toBe(PING);
  });

  it('what was learned survives a restart (snapshot and restore): no cut, the learned interval at once', () => {
    const learner = new BridgeIdleLearner({ pingIntervalMs: PING });
    simulate(learner, [{ at: 0, timeoutMs: 6000 }], 'half-open', 3600_000);
    const stored = JSON.parse(JSON.stringify(learner.snapshot()));
    const restarted = new BridgeIdleLearner({ pingIntervalMs: PING, restored: stored });
    expect(restarted.intervalMs).toBe(learner.intervalMs);
    expect(restarted.learned).toBe(true);
    const run = simulate(restarted, [{ at: 0, timeoutMs: 6000 }], 'half-open', 3600_000, new ManualClock(3600_000));
    expect(run.cuts).toEqual([]);
  });

  it('a cut that was no idle timeout (the board restarted) is searched back up to the ping interval without another cut', () => {
    const learner = new BridgeIdleLearner({ pingIntervalMs: PING });
    learner.survived(PING, 0);
    learner.survived(PING, 0);
    // The board stopped answering once (a reboot): the PING at 20 s went unanswered.
    learner.cut(PING, 'half-open', 0);
    const run = simulate(learner, [{ at: 0, timeoutMs: 3_600_000 }], 'half-open', 3600_000);
    expect(run.cuts).toEqual([]);
    // U stands at 20 s: the interval is just below it, learned.
    expect(learner.learned).toBe(true);
    expect(learner.intervalMs).toBeGreaterThanOrEqual(PING - 2000);
  });

  it('a day after settling the bound is tried once more: a path that got better gets its long interval back, without a cut', () => {
    const learner = new BridgeIdleLearner({ pingIntervalMs: PING, recheckAfterMs: 24 * 3600_000 });
    // 6 s for a day, then the relay is replaced by one that keeps idle links.
    const run = simulate(
      learner,
      [
        { at: 0, timeoutMs: 6000 },
        { at: 24 * 3600_000, timeoutMs: 3_600_000 },
      ],
      'half-open',
      48 * 3600_000,
    );
    expect(run.cuts.length).toBeLessThanOrEqual(2);
    // Back up to the margin below the first cut (at the ping interval itself: a PING at 20 s idle
    // cannot refute a cut at 20 s), without another cut.
    expect(run.cuts.every((c) => c.at < 24 * 3600_000)).toBe(true);
    expect(learner.intervalMs).toBeGreaterThanOrEqual(PING - 2000);
    expect(learner.learned).toBe(true);
  });

  it('the re-check of a path still cutting costs one cut and settles again below it', () => {
    const learner = new BridgeIdleLearner({ pingIntervalMs: PING, recheckAfterMs: 24 * 3600_000 });
    const run = simulate(learner, [{ at: 0, timeoutMs: 6000 }], 'half-open', 49 * 3600_000);
    const later = run.cuts.filter((c) => c.at > 3600_000);
    expect(later.length).toBeGreaterThanOrEqual(1);
    expect(later.length).toBeLessThanOrEqual(2);
    expect(learner.intervalMs).toBeLessThan(6000);
    expect(learner.learned).toBe(true);
  });

  it('never goes below the floor nor above the ping interval', () => {
    const learner = new BridgeIdleLearner({ pingIntervalMs: 10_000, minIntervalMs: 3000 });
    learner.cut(3500, 'closed', 0);
    expect(learner.intervalMs).toBe(3000);
    const other = new BridgeIdleLearner({ pingIntervalMs: 10_000 });
    other.survived(60_000, 0);
    expect(other.intervalMs).toBe(10_000);
  });
});

describe('BridgeIdleLearner.survivalChangesNothing (the PONG fast path of BridgeKeepalive)', () => {
  it('is true only where survived() would change nothing and return null, after any history of survivals and cuts', async () => {
    const fc = (await import('fast-check')).default;
    const event = fc.oneof(
      fc.record({ kind: fc.constant('survived' as const), idleMs: fc.integer({ min: 0, max: 25_000 }) }),
      fc.record({ kind: fc.constantFrom('closed' as const, 'half-open' as const), idleMs: fc.integer({ min: 0, max: 25_000 }) }),
    );
    let fastTaken = 0;
    fc.assert(
      fc.property(fc.array(event, { maxLength: 30 }), fc.integer({ min: 0, max: 25_000 }), fc.nat(3 * 24 * 3600_000), (history, idleMs, later) => {
        const learner = new BridgeIdleLearner({ pingIntervalMs: PING });
        let wall = 1_000_000;
        for (const e of history) {
          wall += 1000;
          if (e.kind === 'survived') learner.survived(e.idleMs, wall);
          else learner.cut(e.idleMs, e.kind, wall);
        }
        if (!learner.survivalChangesNothing(idleMs)) return;
        fastTaken++;
        const before = { interval: learner.intervalMs, timeout: learner.timeoutMs, safe: learner.safeMs, learned: learner.learned, trying: learner.trying, snapshot: learner.snapshot() };
        expect(learner.survived(idleMs, wall + later)).toBeNull();
        expect({ interval: learner.intervalMs, timeout: learner.timeoutMs, safe: learner.safeMs, learned: learner.learned, trying: learner.trying, snapshot: learner.snapshot() }).toEqual(before);
      }),
      { numRuns: 500 },
    );
    expect(fastTaken).toBeGreaterThan(20); // the property was exercised, not vacuous
  });

  it('is false before any survival, after a cut, and for an age longer than proven', () => {
    const learner = new BridgeIdleLearner({ pingIntervalMs: PING });
    expect(learner.survivalChangesNothing(1000)).toBe(false);
    learner.survived(1000, 1);
    expect(learner.survivalChangesNothing(1000)).toBe(true);
    expect(learner.survivalChangesNothing(1001)).toBe(false);
    learner.cut(8000, 'half-open', 2);
    expect(learner.survivalChangesNothing(500)).toBe(false);
  });
});
