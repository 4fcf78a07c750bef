import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { BridgeKeepalive } from '../../host/link/bridge-keepalive.ts';
import { countingTimers } from '../support/counting-timers.ts';

describe('BridgeKeepalive keep-traffic timer', () => {
  it('on a shared timer heap, moves its one timer on every PING and PONG without making a new one; keep-traffic still every interval of silence', async () => {
    const base = new ManualClock();
    const { timers, made } = countingTimers(base);
    let lastTraffic = 0;
    let seq = 0;
    const keepPings: number[] = [];
    const keep: BridgeKeepalive = new BridgeKeepalive({
      target: 'tcp://bridge:23',
      pingIntervalMs: 20_000,
      intervalMs: 2_000, // a fixed keep-traffic interval: the path forgets idle links sooner than the PINGs come
      clock: timers,
      idleMs: () => timers.now() - lastTraffic,
      ready: () => true,
      ping: () => {
        keepPings.push(timers.now());
        send();
      },
      reopen: () => {},
    });
    // A PING (ours or the session's) and its PONG 10 ms later, both traffic.
    const send = () => {
      const s = seq++;
      keep.pingSent(s, Math.round(timers.now() - lastTraffic));
      lastTraffic = timers.now();
      base.setTimeout(() => {
        lastTraffic = timers.now();
        keep.pong(s);
      }, 10);
    };
    await keep.start();
    base.advance(10_000);
    const madeAfterWarmUp = made();
    expect(keepPings.length).toBeGreaterThanOrEqual(4);
    base.advance(60_000);
    // One keep-traffic PING per 2 s of silence (each PONG starts the silence again 10 ms later).
    const gaps = keepPings.slice(1).map((t, i) => t - keepPings[i]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(2_000);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(2_020);
    expect(keepPings.length).toBeGreaterThanOrEqual(33);
    expect(made()).toBe(madeAfterWarmUp); // 30 PINGs and PONGs later: not one new timer
    expect(timers.pending).toBe(1);
    keep.stop();
    expect(timers.pending).toBe(0);
  });
});
