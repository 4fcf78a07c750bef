import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { IdleTimeoutLearner, type CutCause, type ProbeVerdict } from '../../host/mqtt/idle-timeout-learner.ts';

const K = 30_000;

/** A middlebox with idle timeout `timeoutMs`: a proxy closes at exactly that idle age, a NAT forgets silently. */
function path(timeoutMs: number, kind: CutCause) {
  return {
    /** The probe connection idles `idleMs` and then sends a PINGREQ. */
    probe(idleMs: number): ProbeVerdict {
      if (idleMs < timeoutMs) return { outcome: 'survived', idleMs };
      return kind === 'closed' ? { outcome: 'closed', idleMs: timeoutMs } : { outcome: 'half-open', idleMs };
    },
  };
}

/**
 * Runs the live sessions and the probe connection against a path on a ManualClock for
 * `forMs`: each live session pings after `learner.intervalMs` of silence (the probe runs its
 * idle tests one after the other, as PathKeepalive does). Returns the live cuts.
 */
function simulate(learner: IdleTimeoutLearner, timeoutMs: number, kind: CutCause, forMs: number, sessions = 2) {
  const clock = new ManualClock(0);
  const model = path(timeoutMs, kind);
  const cuts: Array<{ at: number; session: number; idleMs: number }> = [];
  const probes: number[] = [];
  let learnedAt: number | null = null;
  const live = (session: number) => {
    const idle = learner.intervalMs;
    clock.setTimeout(() => {
      if (idle >= timeoutMs) {
        // Closed: seen at the timeout itself. Silent: the PINGREQ at `idle` is never answered.
        const seen = kind === 'closed' ? timeoutMs : idle;
        cuts.push({ at: clock.now(), session, idleMs: seen });
        learner.cut(seen, kind, clock.wallNow());
      } else {
        learner.survived(idle, clock.wallNow());
      }
      live(session);
    }, kind === 'closed' ? Math.min(idle, timeoutMs) : idle);
  };
  const probeLoop = () => {
    const d = learner.nextProbe(clock.wallNow());
    if (d === null) {
      if (learnedAt === null) learnedAt = clock.now();
      clock.setTimeout(probeLoop, 60_000);
      return;
    }
    learnedAt = null;
    probes.push(d);
    const verdict = model.probe(d);
    clock.setTimeout(() => {
      learner.probed(verdict, clock.wallNow());
      probeLoop();
    }, verdict.outcome === 'half-open' ? d + 1000 : verdict.idleMs);
  };
  for (let s = 0; s < sessions; s++) live(s);
  probeLoop();
  clock.advance(forMs);
  return { cuts, probes, learnedAt };
}

describe('IdleTimeoutLearner', () => {
  it('with no cut, the interval is the keepalive and there is nothing to probe', () => {
    const learner = new IdleTimeoutLearner({ keepaliveMs: K });
    expect(learner.intervalMs).toBe(K);
    expect(learner.nextProbe(0)).toBeNull();
    expect(learner.converged).toBe(true);
    expect(learner.survived(K, 0)).toBeNull();
  });

  it('a proxy that closes after 15 s idle: the interval drops below 15 s at the first close, and the second close at the same age confirms it', () => {
    const learner = new IdleTimeoutLearner({ keepaliveMs: K });
    const change = learner.cut(15_020, 'closed', 0);
    expect(change).toMatchObject({ previousMs: K, intervalMs: 13_500, timeoutMs: 15_020 });
    expect(change!.reason).toMatch(/cut after 15\.0 s idle \(closed by the path\)/);
    expect(learner.exact).toBe(false);
    // The probe idles a little past it...
    expect(learner.nextProbe(0)).toBe(15_020 + 1502);
    // ...and is closed at the same idle age: the timeout, confirmed.
    expect(learner.probed({ outcome: 'closed', idleMs: 14_990 }, 1)).toMatchObject({ intervalMs: 13_400, timeoutMs: 14_990 });
    expect(learner.exact).toBe(true);
    expect(learner.converged).toBe(true);
    expect(learner.timeoutMs).toBe(14_990);
    expect(learner.intervalMs).toBe(13_400);
    expect(learner.nextProbe(2)).toBeNull();
  });

  it('two sessions closed at the same idle age confirm the timeout without a probe', () => {
    const learner = new IdleTimeoutLearner({ keepaliveMs: K });
    learner.cut(3_004, 'closed', 0);
    expect(learner.cut(3_001, 'closed', 0)).toBeNull();
    expect(learner.exact).toBe(true);
    expect(learner.intervalMs).toBe(2000); // 3 s - 1 s margin
    expect(learner.nextProbe(0)).toBeNull();
  });

  it('a close that was no idle timeout (a broker restart) is refuted by the probe and the interval goes back up', () => {
    const learner = new IdleTimeoutLearner({ keepaliveMs: K });
    expect(learner.cut(12_000, 'closed', 0)!.intervalMs).toBe(10_800);
    const d = learner.nextProbe(0)!;
    expect(d).toBe(13_200);
    const change = learner.probed({ outcome: 'survived', idleMs: d }, 1);
    expect(change).toMatchObject({ intervalMs: K, timeoutMs: null });
    expect(learner.nextProbe(2)).toBeNull();
  });

  it('cuts of a busy connection (idle under the floor) teach nothing', () => {
    const learner = new IdleTimeoutLearner({ keepaliveMs: K, minIntervalMs: 2000 });
    expect(learner.cut(150, 'closed', 0)).toBeNull();
    expect(learner.cut(1999, 'half-open', 0)).toBeNull();
    expect(learner.intervalMs).toBe(K);
    expect(learner.timeoutMs).toBeNull();
  });

  it('a NAT that forgets silently: the floor at once, then the probe bisects up to just below the timeout', () => {
    const learner = new IdleTimeoutLearner({ keepaliveMs: K, minIntervalMs: 2000 });
    const change = learner.cut(K, 'half-open', 0);
    expect(change).toMatchObject({ previousMs: K, intervalMs: 2000, timeoutMs: K });
    expect(change!.reason).toMatch(/unanswered \(half-open\)/);
    const nat = path(20_000, 'half-open');
    const tried: number[] = [];
    for (let i = 0; i < 20; i++) {
      const d = learner.nextProbe(i);
      if (d === null) break;
      tried.push(d);
      learner.probed(nat.probe(d), i);
    }
    expect(tried.length).toBeLessThanOrEqual(6);
    expect(learner.converged).toBe(true);
    expect(learner.intervalMs).toBeLessThan(20_000);
    expect(learner.intervalMs).toBeGreaterThanOrEqual(17_000);
    // Everything the live sessions use was proven by the probe.
    expect(learner.intervalMs).toBeLessThanOrEqual(learner.safeMs!);
  });

  for (const kind of ['closed', 'half-open'] as const) {
    for (const timeoutMs of [3_000, 15_000, 20_000, 25_000]) {
      it(`simulated on a ManualClock: a ${kind === 'closed' ? 'proxy' : 'NAT'} with a ${timeoutMs / 1000} s idle timeout costs at most one cut per session, then none`, () => {
        const learner = new IdleTimeoutLearner({ keepaliveMs: K });
        const { cuts, learnedAt } = simulate(learner, timeoutMs, kind, 3_600_000);
        const perSession = new Map<number, number>();
        for (const c of cuts) perSession.set(c.session, (perSession.get(c.session) ?? 0) + 1);
        expect([...perSession.values()].every((n) => n === 1)).toBe(true);
        expect(Math.max(...cuts.map((c) => c.at))).toBeLessThanOrEqual(K);
        expect(learner.converged).toBe(true);
        expect(learnedAt).not.toBeNull();
        // Below the timeout, and not wastefully far below (at most margin + resolution).
        expect(learner.intervalMs).toBeLessThan(timeoutMs);
        expect(learner.intervalMs).toBeGreaterThanOrEqual(Math.min(timeoutMs * 0.85 - 1000, timeoutMs - 2000));
      });
    }
  }

  it('a path whose timeout is above the keepalive is never cut and never probed', () => {
    const learner = new IdleTimeoutLearner({ keepaliveMs: K });
    const { cuts, probes } = simulate(learner, 60_000, 'closed', 600_000);
    expect(cuts).toEqual([]);
    expect(probes).toEqual([]);
    expect(learner.intervalMs).toBe(K);
  });

  it('what was learned survives a restart (snapshot and restore): no cut, no search', () => {
    const clock = new ManualClock();
    const first = new IdleTimeoutLearner({ keepaliveMs: K });
    simulate(first, 20_000, 'half-open', 600_000);
    const stored = JSON.parse(JSON.stringify(first.snapshot()));
    const second = new IdleTimeoutLearner({ keepaliveMs: K, restored: stored });
    expect(second.intervalMs).toBe(first.intervalMs);
    expect(second.nextProbe(clock.wallNow())).toBeNull();
    const { cuts, probes } = simulate(second, 20_000, 'half-open', 600_000);
    expect(cuts).toEqual([]);
    expect(probes).toEqual([]);
  });

  it('after a day the upper bound is probed again: a path that got better gets the keepalive back', () => {
    const clock = new ManualClock();
    const learner = new IdleTimeoutLearner({ keepaliveMs: K, reprobeAfterMs: 24 * 3600_000 });
    learner.cut(15_000, 'closed', clock.wallNow());
    learner.cut(15_000, 'closed', clock.wallNow());
    expect(learner.intervalMs).toBe(13_500);
    clock.advance(23 * 3600_000);
    expect(learner.nextProbe(clock.wallNow())).toBeNull();
    clock.advance(3600_000);
    const d = learner.nextProbe(clock.wallNow())!;
    expect(d).toBe(16_500);
    // The proxy is gone: the probe survives past the old timeout.
    expect(learner.probed({ outcome: 'survived', idleMs: d }, clock.wallNow())).toMatchObject({ intervalMs: K, timeoutMs: null });
    // Still cut at the same age: the check waits another day.
    const again = new IdleTimeoutLearner({ keepaliveMs: K, restored: { version: 1, safeMs: null, cuts: [], convergedAt: null } });
    again.cut(15_000, 'closed', 0);
    again.probed({ outcome: 'closed', idleMs: 15_000 }, 0);
    expect(again.nextProbe(24 * 3600_000)).toBe(16_500);
    again.probed({ outcome: 'closed', idleMs: 15_000 }, 24 * 3600_000);
    expect(again.nextProbe(24 * 3600_000 + 1)).toBeNull();
  });

  it('never goes below the floor nor above the keepalive', () => {
    const learner = new IdleTimeoutLearner({ keepaliveMs: 10_000, minIntervalMs: 2000 });
    learner.cut(2_100, 'closed', 0);
    expect(learner.intervalMs).toBe(2000);
    const wide = new IdleTimeoutLearner({ keepaliveMs: 10_000 });
    wide.survived(60_000, 0);
    expect(wide.intervalMs).toBe(10_000);
  });
});
