import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { refreshTopics, RefreshThrottle } from '../../host/homie/refresh-requests.ts';

describe('RefreshThrottle', () => {
  it('answers at once, then at most once per window: a request inside it is answered at its end, not dropped', () => {
    const clock = new ManualClock();
    const throttle = new RefreshThrottle(clock, 1000);
    const runs: number[] = [];
    const run = () => runs.push(clock.now());
    throttle.request('dev', run);
    expect(runs).toEqual([0]);
    clock.advance(100);
    throttle.request('dev', run);
    throttle.request('dev', run); // coalesced with the one pending
    expect(runs).toEqual([0]);
    clock.advance(899);
    expect(runs).toEqual([0]);
    clock.advance(1);
    expect(runs).toEqual([0, 1000]);
    throttle.request('other', run); // per key
    expect(runs).toEqual([0, 1000, 1000]);
    clock.advance(5000);
    throttle.request('dev', run);
    expect(runs).toEqual([0, 1000, 1000, 6000]);
  });

  it('stop() drops what is pending', () => {
    const clock = new ManualClock();
    const throttle = new RefreshThrottle(clock, 1000);
    const runs: number[] = [];
    throttle.request('dev', () => runs.push(1));
    throttle.request('dev', () => runs.push(2));
    throttle.stop();
    clock.advance(5000);
    expect(runs).toEqual([1]);
  });

  it('topics: one per device, one broadcast (Homie 5 $broadcast)', () => {
    expect(refreshTopics.device('bench')).toBe('homie/5/bench/$tether/refresh');
    expect(refreshTopics.broadcast).toBe('homie/5/$broadcast/tether-refresh');
  });
});
