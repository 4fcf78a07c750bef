import { SharedTimers } from '../../host/time/shared-timers.ts';
import type { Clock } from '../../host/time/clock.ts';

/**
 * A SharedTimers on `base` that counts the new timer entries made (setTimeout), not the ones
 * set again in place (reschedule): what a test of "no new timer per PING" asserts on.
 */
export function countingTimers(base: Clock): { timers: SharedTimers; made: () => number } {
  const timers = new SharedTimers(base);
  let made = 0;
  const setTimeout = timers.setTimeout.bind(timers);
  timers.setTimeout = (fn, ms) => {
    made++;
    return setTimeout(fn, ms);
  };
  return { timers, made: () => made };
}
