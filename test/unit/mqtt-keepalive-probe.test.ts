import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { KeepaliveProbe, type HalfOpenInfo } from '../../host/mqtt/mqtt-keepalive-probe.ts';
import { countingTimers } from '../support/counting-timers.ts';


const K = 2000;
const T = 1000;

function setup() {
  const clock = new ManualClock(1000);
  const pings: number[] = [];
  const halfOpen: Array<HalfOpenInfo & { at: number }> = [];
  const probe = new KeepaliveProbe({
    keepaliveMs: K,
    pingRespTimeoutMs: T,
    clock,
    sendPing: () => {
      pings.push(clock.now());
      probe.packetSent();
    },
    onHalfOpen: (info) => halfOpen.push({ ...info, at: clock.now() }),
  });
  return { clock, probe, pings, halfOpen };
}

describe('KeepaliveProbe', () => {
  it('sends a PINGREQ after keepalive of silence, not before', () => {
    const { clock, probe, pings } = setup();
    const t0 = clock.now();
    probe.start();
    clock.advance(K - 1);
    expect(pings).toEqual([]);
    clock.advance(1);
    expect(pings).toEqual([t0 + K]);
    expect(probe.pingOutstanding).toBe(true);
  });

  it('declares half-open at exactly keepalive + pingRespTimeout after the last packet received', () => {
    const { clock, probe, pings, halfOpen } = setup();
    const t0 = clock.now();
    probe.start();
    expect(probe.deadlineAt).toBe(t0 + K + T);
    clock.advance(K + T - 1);
    expect(pings).toHaveLength(1);
    expect(halfOpen).toEqual([]);
    clock.advance(1);
    expect(halfOpen).toEqual([{ at: t0 + K + T, silentForMs: K + T, pingOutstandingForMs: T, pingIdleMs: K }]);
    // Declared once; the probe stopped itself and left no timer.
    expect(probe.isRunning).toBe(false);
    expect(clock.pending).toBe(0);
    clock.advance(10 * K);
    expect(halfOpen).toHaveLength(1);
    expect(pings).toHaveLength(1);
  });

  it('an answer deadline that fires late (event loop blocked) lets a waiting PINGRESP in before it decides', () => {
    const { clock, probe, pings, halfOpen } = setup();
    probe.start();
    clock.advance(K);
    expect(pings).toHaveLength(1);
    clock.block(5 * T); // busy past the answer deadline; the PINGRESP sits in the socket
    // After the due timers (the late deadline looks again only after a turn of the loop), the
    // loop reads the socket: the PINGRESP arrives.
    clock.setTimeout(() => probe.packetReceived('pingresp'), 0);
    clock.advance(0);
    expect(halfOpen).toEqual([]);
    expect(probe.isRunning).toBe(true);
    expect(probe.pingsAnswered).toBe(1);
  });

  it('a late answer deadline with nothing waiting is half-open after one more turn of the loop', () => {
    const { clock, probe, halfOpen } = setup();
    const t0 = clock.now();
    probe.start();
    clock.advance(K);
    clock.block(5 * T);
    clock.advance(0);
    expect(halfOpen).toEqual([{ at: t0 + K + 5 * T, silentForMs: K + 5 * T, pingOutstandingForMs: 5 * T, pingIdleMs: K }]);
    expect(clock.pending).toBe(0);
  });

  it('a PINGRESP clears the outstanding ping, records the RTT and starts a new keepalive period', () => {
    const { clock, probe, pings, halfOpen } = setup();
    const t0 = clock.now();
    probe.start();
    clock.advance(K);
    clock.advance(300);
    probe.packetReceived('pingresp');
    expect(probe.pingOutstanding).toBe(false);
    expect(probe.lastPingRttMs).toBe(300);
    clock.advance(T); // past the first PINGREQ's answer-by time: nothing happens
    expect(halfOpen).toEqual([]);
    // The next PINGREQ is K after the PINGRESP (the PINGREQ was sent at t0 + K, the older of the two).
    clock.advance(K - 300 - T - 1);
    expect(pings).toEqual([t0 + K]);
    clock.advance(1);
    expect(pings).toEqual([t0 + K, t0 + 2 * K]);
    // This one goes unanswered: half-open T later.
    clock.advance(T);
    expect(halfOpen).toHaveLength(1);
    expect(halfOpen[0]!.at).toBe(t0 + 2 * K + T);
    expect(halfOpen[0]!.silentForMs).toBe(K - 300 + T);
  });

  it('received activity defers the PINGREQ (together with sent activity)', () => {
    const { clock, probe, pings, halfOpen } = setup();
    const t0 = clock.now();
    probe.start();
    for (let i = 0; i < 10; i++) {
      clock.advance(K / 2);
      probe.packetReceived('publish');
      probe.packetSent();
    }
    expect(pings).toEqual([]);
    expect(halfOpen).toEqual([]);
    const last = t0 + 10 * (K / 2);
    expect(probe.deadlineAt).toBe(last + K + T);
    clock.advance(K);
    expect(pings).toEqual([last + K]);
  });

  it('receiving alone does not defer the PINGREQ: the broker must hear from us within the keepalive', () => {
    const { clock, probe, pings } = setup();
    const t0 = clock.now();
    probe.start();
    for (let i = 0; i < 4; i++) {
      clock.advance(K / 4);
      probe.packetReceived('publish');
    }
    expect(pings).toEqual([t0 + K]);
  });

  it('other packets received while a PINGREQ is outstanding do not excuse a missing PINGRESP', () => {
    const { clock, probe, halfOpen } = setup();
    const t0 = clock.now();
    probe.start();
    clock.advance(K);
    clock.advance(T / 2);
    probe.packetReceived('publish');
    clock.advance(T / 2);
    expect(halfOpen).toEqual([{ at: t0 + K + T, silentForMs: T / 2, pingOutstandingForMs: T, pingIdleMs: K }]);
  });

  it('stop() cancels everything; start() begins a fresh period', () => {
    const { clock, probe, pings, halfOpen } = setup();
    probe.start();
    clock.advance(K); // PINGREQ out
    probe.stop();
    expect(clock.pending).toBe(0);
    clock.advance(5 * K);
    expect(halfOpen).toEqual([]);
    const t1 = clock.now();
    probe.start();
    expect(probe.pingOutstanding).toBe(false);
    clock.advance(K);
    expect(pings.at(-1)).toBe(t1 + K);
    // Packets after stop are ignored and do not restart anything.
    probe.stop();
    probe.packetReceived('pingresp');
    probe.packetSent();
    expect(clock.pending).toBe(0);
  });

  it('rejects nonsense timings', () => {
    const clock = new ManualClock(1000);
    const base = { clock, sendPing() {}, onHalfOpen() {} };
    expect(() => new KeepaliveProbe({ ...base, keepaliveMs: 0, pingRespTimeoutMs: T })).toThrow(RangeError);
    expect(() => new KeepaliveProbe({ ...base, keepaliveMs: K, pingRespTimeoutMs: Number.NaN })).toThrow(RangeError);
  });

  describe('PINGREQ interval independent of the keepalive', () => {
    function withInterval(intervalMs: number) {
      const clock = new ManualClock(1000);
      const pings: number[] = [];
      const answered: Array<{ idleMs: number; rttMs: number }> = [];
      const halfOpen: HalfOpenInfo[] = [];
      const probe = new KeepaliveProbe({
        keepaliveMs: K,
        pingRespTimeoutMs: T,
        pingIntervalMs: intervalMs,
        clock,
        sendPing: () => {
          pings.push(clock.now());
          probe.packetSent();
        },
        onHalfOpen: (info) => halfOpen.push(info),
        onPingAnswered: (info) => answered.push(info),
      });
      return { clock, probe, pings, answered, halfOpen };
    }

    it('sends a PINGREQ after the interval of silence, reports the idle age each answered one survived', () => {
      const { clock, probe, pings, answered } = withInterval(K / 4);
      const t0 = clock.now();
      probe.start();
      for (let i = 1; i <= 8; i++) {
        clock.advance(K / 4);
        expect(pings).toHaveLength(i);
        clock.advance(10);
        probe.packetReceived('pingresp');
      }
      expect(pings[0]).toBe(t0 + K / 4);
      expect(answered).toHaveLength(8);
      expect(answered[0]).toEqual({ idleMs: K / 4, rttMs: 10 });
      expect(probe.pingsAnswered).toBe(8);
    });

    it('is capped at the keepalive; the half-open bound stays keepalive + pingRespTimeout', () => {
      const { clock, probe, pings, halfOpen } = withInterval(10 * K);
      expect(probe.pingIntervalMs).toBe(K);
      probe.start();
      clock.advance(K + T);
      expect(pings).toHaveLength(1);
      expect(halfOpen).toHaveLength(1);
    });

    it('setPingInterval applies at once: an overdue PINGREQ goes out immediately', () => {
      const { clock, probe, pings } = withInterval(K);
      const t0 = clock.now();
      probe.start();
      clock.advance(K / 2);
      probe.setPingInterval(K / 4);
      clock.advance(0);
      expect(pings).toEqual([t0 + K / 2]);
      probe.packetReceived('pingresp');
      clock.advance(K / 4);
      expect(pings).toEqual([t0 + K / 2, t0 + (3 * K) / 4]);
      expect(() => probe.setPingInterval(0)).toThrow(RangeError);
    });
  });

  it('on a shared timer heap, sets no new timer per PINGREQ: its one entry is set again in place; still half-open at the bound', () => {
    const clock = new ManualClock(1000);
    const { timers, made } = countingTimers(clock);
    let answer = true;
    const pings: number[] = [];
    const halfOpen: HalfOpenInfo[] = [];
    const probe: KeepaliveProbe = new KeepaliveProbe({
      keepaliveMs: K,
      pingRespTimeoutMs: T,
      clock: timers,
      sendPing: () => {
        pings.push(clock.now());
        probe.packetSent();
        // The broker's answer on the base clock: only the probe's own timer is on the heap.
        if (answer) clock.setTimeout(() => probe.packetReceived('pingresp'), 10);
      },
      onHalfOpen: (info) => halfOpen.push(info),
    });
    probe.start();
    expect(made()).toBe(1);
    clock.advance(20 * K);
    expect(pings.length).toBeGreaterThanOrEqual(19);
    expect(probe.pingsAnswered).toBeGreaterThanOrEqual(pings.length - 1); // the last answer may be on its way
    expect(made()).toBe(1); // 19 PINGREQs, their answers and re-arms later: still the first entry
    expect(timers.pending).toBe(1);
    answer = false;
    const last = pings.length;
    clock.advance(K + T);
    expect(pings.length).toBe(last + 1);
    expect(halfOpen).toHaveLength(1);
    expect(probe.isRunning).toBe(false);
    expect(timers.pending).toBe(0);
    // Started again after stop(): the spent entry is reused too.
    probe.start();
    expect(made()).toBe(1);
    expect(timers.pending).toBe(1);
    probe.stop();
    expect(timers.pending).toBe(0);
  });
});
