import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { KeepaliveFacts, keepaliveStats } from '../../host/homie/keepalive-facts.ts';
import { RttStats } from '../../host/session/rtt-stats.ts';
import { BridgeKeepalive } from '../../host/link/bridge-keepalive.ts';

const stats = (over: Partial<{ p50: number | null; last: number | null; lastSeen: number | null; bootId: number | null; reboots: Record<string, number>; asleepMs: number }> = {}) => ({
  rttMs: { last: over.last ?? over.p50 ?? null, p50: over.p50 ?? null, p99: null },
  lastSeen: over.lastSeen ?? null,
  bootId: over.bootId ?? 7,
  reboots: over.reboots ?? { watchdog: 0 },
  asleepMs: over.asleepMs ?? 0,
});

describe('KeepaliveFacts: an idle board costs close to nothing on the broker', () => {
  it('a simulated day of an idle board, looked at every 5 s with a jittery RTT: a few hundred messages, not 86,400', () => {
    const clock = new ManualClock();
    const facts = new KeepaliveFacts({ clock, refreshMs: 300_000 });
    let messages = 0;
    let seed = 1;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const window: number[] = [];
    for (let t = 0; t < 86_400_000; t += 5000) {
      clock.advance(5000);
      // One PING a second, each RTT anywhere from 10 to 30 ms; the median is over the last 64 (RttStats keeps 256: steadier still).
      for (let i = 0; i < 5; i++) window.push(10 + 20 * rand());
      window.splice(0, Math.max(0, window.length - 64));
      const p50 = [...window].sort((a, b) => a - b)[Math.floor(window.length / 2)]!;
      messages += facts.due(stats({ p50, last: window.at(-1)!, lastSeen: clock.now() - 300 })).length;
    }
    // Refreshes of rtt and last-seen every 5 minutes (2 x 288) plus the first values; the old
    // way was 5 messages every 5 s (86,400 a day).
    expect(messages).toBeLessThanOrEqual(2 * 288 + 10);
    expect(messages).toBeGreaterThanOrEqual(2 * 288);
  });

  it('a fast link whose RTT median wanders between 1 and 4 ms publishes it only with the refresh (a fleet of them stays quiet)', () => {
    const clock = new ManualClock();
    const facts = new KeepaliveFacts({ clock, refreshMs: 300_000 });
    let rtt = 0;
    const medians = [1, 4, 1.2, 3.8, 0.6, 4.1, 2];
    for (let i = 0; i <= 60; i++) {
      clock.advance(5000); // 5 minutes and one check, every 5 s
      const sent = facts.due(stats({ p50: medians[i % medians.length]!, lastSeen: clock.now() - 300 }));
      rtt += sent.filter((f) => f.property === 'rtt').length;
    }
    expect(rtt).toBe(2); // the first value and the refresh at 5 minutes
    // A real change still goes out, once it has lasted rttSettleMs (30 s: every look of it until then says nothing).
    const looks: string[][] = [];
    for (let t = 0; t <= 30_000; t += 5000) {
      clock.advance(5000);
      looks.push(facts.due(stats({ p50: 30, lastSeen: clock.now() })).map((f) => `${f.property} ${f.value}`));
    }
    expect(looks).toEqual([[], [], [], [], [], [], ['rtt 30.0']]);
  });

  it("the daemon's own load moving the median for less than rttSettleMs is not news: a fleet's start-up publishes no RTT after `ready`", () => {
    // Modelled on a 2,000-board start measured with the bench (board sim-17): the median is 1.7 ms
    // when the board becomes ready, 26 ms while the other boards start (about 25 s), then 7.1 ms.
    // The old rule published 26.0 and then 7.1: two messages per board while the fleet settled.
    const clock = new ManualClock();
    const facts = new KeepaliveFacts({ clock, refreshMs: 300_000 });
    expect(facts.due(stats({ p50: 1.7, lastSeen: clock.now() }), { stateChanged: true }).filter((f) => f.property === 'rtt').map((f) => f.value)).toEqual(['1.7']);
    const rtt: string[] = [];
    for (let t = 5000; t < 240_000; t += 5000) {
      clock.advance(5000);
      const p50 = t < 10_000 ? 1.7 : t < 35_000 ? 26 : 7.1;
      for (const f of facts.due(stats({ p50, lastSeen: clock.now() }))) if (f.property === 'rtt') rtt.push(f.value);
    }
    expect(rtt).toEqual([]);
  });

  it('a change must stay on one side of the published value: a spike up then a dip down (each shorter than rttSettleMs) is not news, a dip that lasts is', () => {
    const clock = new ManualClock();
    const facts = new KeepaliveFacts({ clock, refreshMs: 300_000, rttSettleMs: 30_000 });
    facts.due(stats({ p50: 40, lastSeen: 0 }));
    const look = (p50: number) => {
      clock.advance(5000);
      return facts.due(stats({ p50, lastSeen: clock.now() })).filter((f) => f.property === 'rtt').map((f) => f.value);
    };
    for (let i = 0; i < 5; i++) expect(look(90)).toEqual([]); // up for 25 s
    for (let i = 0; i < 6; i++) expect(look(5)).toEqual([]); // then down: its own 30 s start now (25 s of them here)
    expect(look(5)).toEqual(['5.0']); // 30 s down
    for (let i = 0; i < 5; i++) expect(look(40)).toEqual([]); // back up for 25 s
    expect(look(6)).toEqual([]); // within the bounds of 5.0: the up-run is forgotten
    for (let i = 0; i < 6; i++) expect(look(40)).toEqual([]);
    expect(look(40)).toEqual(['40.0']);
  });

  it('rttSettleMs 0: an RTT beyond both bounds goes out at the first look', () => {
    const clock = new ManualClock();
    const facts = new KeepaliveFacts({ clock, rttSettleMs: 0 });
    facts.due(stats({ p50: 2, lastSeen: 0 }));
    clock.advance(5000);
    expect(facts.due(stats({ p50: 30, lastSeen: 0 })).map((f) => [f.property, f.value])).toEqual([['rtt', '30.0']]);
    clock.advance(5000);
    expect(facts.due(stats({ p50: 40, lastSeen: 0 }))).toEqual([]); // within 50 % of 30
  });

  it('a look with nothing new allocates no result: the same empty array every time', () => {
    const clock = new ManualClock();
    const facts = new KeepaliveFacts({ clock });
    facts.due(stats({ p50: 12, lastSeen: 0 }));
    clock.advance(5000);
    const first = facts.due(stats({ p50: 13, lastSeen: 4000 }));
    clock.advance(5000);
    expect(first).toEqual([]);
    expect(facts.due(stats({ p50: 14, lastSeen: 9000 }))).toBe(first);
  });

  it('counters go out once per change; a state change sends RTT and last-seen at once', () => {
    const clock = new ManualClock();
    const facts = new KeepaliveFacts({ clock, refreshMs: 300_000 });
    const names = (xs: ReadonlyArray<{ property: string }>) => xs.map((x) => x.property).sort();
    expect(names(facts.due(stats({ p50: 12, lastSeen: 0 })))).toEqual(['asleep-time', 'boot-id', 'last-seen', 'reboots', 'rtt']);
    clock.advance(5000);
    expect(facts.due(stats({ p50: 13, lastSeen: 4000 }))).toEqual([]); // nothing new
    clock.advance(5000);
    expect(names(facts.due(stats({ p50: 13, lastSeen: 9000 }), { stateChanged: true }))).toEqual(['last-seen', 'rtt']);
    clock.advance(5000);
    const reboot = facts.due(stats({ p50: 13, bootId: 8, reboots: { watchdog: 1 }, lastSeen: 14_000 }), { reboot: { causes: ['watchdog'] } as never });
    expect(reboot.map((f) => [f.property, f.value])).toEqual([
      ['boot-id', '8'],
      ['reboots', '1'],
      ['reset-cause', 'watchdog'],
    ]);
    const moved = () => facts.due(stats({ p50: 40, bootId: 8, reboots: { watchdog: 1 }, lastSeen: 19_000 })).map((f) => [f.property, f.value]);
    clock.advance(5000);
    expect(moved()).toEqual([]); // moved > 50 %, not for long yet
    clock.advance(30_000);
    expect(moved()).toEqual([['rtt', '40.0']]); // and it lasted
    expect(facts.due(stats({ p50: 40, bootId: 8, reboots: { watchdog: 1 }, asleepMs: 2400, lastSeen: 19_000 })).map((f) => [f.property, f.value])).toEqual([['asleep-time', '2']]);
    facts.reset();
    expect(facts.due(stats({ p50: 40, bootId: 8, lastSeen: 19_000 })).length).toBe(5);
  });

  it('a tcp:// board: its bridge path facts go out once, and again only when a cut or the search changes them', () => {
    const clock = new ManualClock();
    const facts = new KeepaliveFacts({ clock });
    const path = (intervalMs: number, timeoutMs: number | null, halfOpen: number) => ({ ...stats(), keepTraffic: { intervalMs, timeoutMs, learned: true, drops: { closed: 0, 'half-open': halfOpen } } });
    const first = facts.due(path(20_000, null, 0)).filter((f) => ['keep-interval', 'idle-timeout', 'drops-closed', 'drops-half-open'].includes(f.property));
    expect(first.map((f) => [f.property, f.value])).toEqual([
      ['keep-interval', '20.0'],
      ['idle-timeout', '0.0'],
      ['drops-closed', '0'],
      ['drops-half-open', '0'],
    ]);
    expect(facts.due(path(20_000, null, 0))).toEqual([]);
    const cut = facts.due(path(2000, 20_000, 1));
    expect(cut.map((f) => [f.property, f.value])).toEqual([
      ['keep-interval', '2.0'],
      ['idle-timeout', '20.0'],
      ['drops-half-open', '1'],
    ]);
    // A serial board has no such facts.
    expect(new KeepaliveFacts({ clock }).due(stats()).some((f) => f.property === 'keep-interval')).toBe(false);
  });

  it("keepaliveStats reads a link's session as link.stats() would for the facts: no RTT before the first PONG, then its median", () => {
    const rtt = new RttStats();
    const session = { rtt, lastSeen: null as number | null, bootId: null as number | null, counters: { reboots: { watchdog: 0, external: 0 }, asleepMs: 0 } };
    const link = { session, keepTraffic: null } as unknown as Parameters<typeof keepaliveStats>[0];
    const clock = new ManualClock();
    const facts = new KeepaliveFacts({ clock });
    expect(facts.due(keepaliveStats(link)).map((f) => f.property)).toEqual(['reboots', 'asleep-time']); // no RTT, last-seen or boot id yet
    for (const ms of [12, 14, 13]) rtt.add(ms);
    Object.assign(session, { lastSeen: 0, bootId: 5 });
    session.counters.reboots.external = 2;
    session.counters.asleepMs = 3000;
    expect(keepaliveStats(link)).toMatchObject({ rttMs: { last: 13, p50: 13 }, lastSeen: 0, bootId: 5, asleepMs: 3000, keepTraffic: null });
    expect(facts.due(keepaliveStats(link)).map((f) => [f.property, f.value])).toEqual([
      ['rtt', '13.0'],
      ['last-seen', new Date(clock.wallNow()).toISOString()],
      ['boot-id', '5'],
      ['reboots', '2'],
      ['asleep-time', '3'],
    ]);
  });

  it("keepaliveStats reads a tcp:// link's keep-traffic as its stats say, before and after cuts (field by field, no stats object)", () => {
    const clock = new ManualClock();
    let idle = 0;
    const keep = new BridgeKeepalive({ target: 'tcp://bridge:23', pingIntervalMs: 20_000, clock, idleMs: () => idle, ready: () => true, ping: () => {}, reopen: () => {} });
    const session = { rtt: new RttStats(), lastSeen: null, bootId: null, counters: { reboots: {}, asleepMs: 0 } };
    const link = { session, keepTraffic: keep } as unknown as Parameters<typeof keepaliveStats>[0];
    const read = () => structuredClone(keepaliveStats(link).keepTraffic);
    expect(read()).toEqual(keep.stats);
    void keep.start();
    idle = 6000;
    keep.closed(6000, false); // the path closed the link after 6 s idle
    expect(keep.stats.drops.closed).toBe(1);
    expect(read()).toEqual(keep.stats);
    keep.pingSent(7, 6000);
    keep.lostWithLinkOpen(); // half-open
    expect(keep.stats.drops['half-open']).toBe(1);
    expect(read()).toEqual(keep.stats);
    expect(new KeepaliveFacts({ clock }).due(keepaliveStats(link)).filter((f) => f.property.startsWith('drops')).map((f) => [f.property, f.value])).toEqual([
      ['drops-closed', '1'],
      ['drops-half-open', '1'],
    ]);
    keep.stop();
  });
});
