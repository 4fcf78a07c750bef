import { beforeEach, describe, expect, it } from 'vitest';
import { DeviceSession, type Hello, type StateChange } from '../../host/session/device-session.ts';
import { LeaseRegistry } from '../../host/session/lease-registry.ts';
import { PhiAccrualDetector } from '../../host/session/phi-accrual-detector.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { helloMessage } from '../support/hello-message.ts';
import { countingTimers } from '../support/counting-timers.ts';
import type { HostMessage } from '../../shared/protocol/messages.ts';

let clock: ManualClock;

const hello = helloMessage;

/** A session wired to a scripted device: `answer` decides whether PINGs get PONGs. */
function harness(options: { restore?: (h: Hello, rebooted: boolean) => Promise<void>; leases?: LeaseRegistry; detector?: PhiAccrualDetector } = {}) {
  const sent: HostMessage[] = [];
  const raw: number[][] = [];
  const changes: StateChange[] = [];
  const restores: Array<[number, boolean]> = [];
  let answer = true;
  let bootId = 10;
  let rttMs = 20;
  const session = new DeviceSession({
    clock,
    pingIntervalMs: 1000,
    misses: 3,
    leases: options.leases,
    detector: options.detector,
    send: (m) => {
      sent.push(m);
      if (!answer) return;
      if (m.type === 'ping') {
        clock.setTimeout(() => {
          if (answer) session.receive({ type: 'pong', seq: m.seq, uptimeMs: 1, bootId, leaseActive: m.leaseMs > 0, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: m.leaseMs });
        }, rttMs);
      }
      if (m.type === 'hello-request') clock.setTimeout(() => answer && session.receive(hello({ bootId })), rttMs);
    },
    sendRaw: (b) => raw.push(b),
    restore: async (h, rebooted) => {
      restores.push([h.bootId, rebooted]);
      await options.restore?.(h, rebooted);
    },
  });
  session.on('state', (c) => changes.push(c));
  return {
    session,
    sent,
    raw,
    changes,
    restores,
    set answer(v: boolean) {
      answer = v;
    },
    set bootId(v: number) {
      bootId = v;
    },
    set rtt(v: number) {
      rttMs = v;
    },
    pings: () => sent.filter((m): m is Extract<HostMessage, { type: 'ping' }> => m.type === 'ping'),
  };
}

describe('DeviceSession', () => {
  beforeEach(() => {
    clock = new ManualClock();
  });

  it('handshakes: HELLO_REQUEST, HELLO, restore, PING, PONG -> ready', async () => {
    const h = harness();
    expect(h.session.lastSeen).toBeNull(); // nothing heard yet
    h.session.linkUp();
    expect(h.session.state).toBe('init');
    expect(h.session.lastSeen).toBeNull();
    expect(h.sent[0]).toEqual({ type: 'hello-request' });
    await clock.advanceAsync(100);
    expect(h.session.lastSeen).toBe(clock.now() - (100 - 2 * 20)); // the HELLO at 20 ms, its PING's PONG at 40 ms
    expect(h.restores).toEqual([[10, false]]);
    expect(h.session.state).toBe('ready');
    expect(h.changes.map((c) => `${c.from}->${c.to}`)).toEqual(['init->ready']);
    expect(h.session.rtt.last).toBe(20);
    h.session.close();
  });

  it('stays ready while PONGs come, for a long time', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(60_000);
    expect(h.session.state).toBe('ready');
    expect(h.pings().length).toBeGreaterThanOrEqual(59);
    h.session.close();
  });

  it('does not re-arm its lost deadline on every PONG (a fleet sends thousands a second), and is still lost exactly at the bound', async () => {
    const deadlineTimers: number[] = [];
    const setTimeout = clock.setTimeout.bind(clock);
    // PING ticks are 1000 ms, simulated PONGs 20 ms: anything else is the handshake or lost deadline.
    clock.setTimeout = (fn, ms) => {
      if (ms !== 1000 && ms !== 20) deadlineTimers.push(ms);
      return setTimeout(fn, ms);
    };
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(60_000);
    const pongs = h.session.counters.pongs;
    expect(pongs).toBeGreaterThanOrEqual(59);
    expect(deadlineTimers.length).toBeLessThanOrEqual(pongs / 2 + 1); // + the handshake deadline; one per PONG before
    const lastPong = h.session.lastSeen!;
    h.answer = false;
    await clock.advanceAsync(10_000);
    const lost = h.changes.find((c) => c.to === 'lost')!;
    expect(lost.at - lastPong).toBe(3000);
    h.session.close();
  });

  it('on a shared timer heap, sets no new timer per PING or per bound: its tick and deadline entries are reused; still lost exactly at the bound', async () => {
    const { timers, made } = countingTimers(clock);
    let answer = true;
    const changes: StateChange[] = [];
    const session: DeviceSession = new DeviceSession({
      clock: timers,
      pingIntervalMs: 1000,
      misses: 3,
      send: (m) => {
        if (!answer) return;
        // The device's answers on the base clock: only the session's own timers are on the heap.
        if (m.type === 'ping') clock.setTimeout(() => answer && session.receive({ type: 'pong', seq: m.seq, uptimeMs: 1, bootId: 10, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 }), 20);
        if (m.type === 'hello-request') clock.setTimeout(() => answer && session.receive(hello()), 20);
      },
      sendRaw: () => {},
    });
    session.on('state', (c) => changes.push(c));
    session.linkUp();
    await clock.advanceAsync(5_000);
    expect(session.state).toBe('ready');
    const madeAtReady = made();
    await clock.advanceAsync(60_000);
    expect(session.counters.pingsSent).toBeGreaterThanOrEqual(64);
    expect(made()).toBe(madeAtReady); // 60 PINGs and 20 deadline checks later: not one new entry
    expect(timers.pending).toBe(2); // the tick and the deadline
    const lastPong = session.lastSeen!;
    answer = false;
    await clock.advanceAsync(10_000);
    const lost = changes.find((c) => c.to === 'lost')!;
    expect(lost.at - lastPong).toBe(3000);
    session.close();
    expect(timers.pending).toBe(0);
  });

  it('a lost deadline that fires late (event loop blocked) lets the waiting answers in before it decides', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(5_250);
    expect(h.session.state).toBe('ready');
    h.answer = false;
    const lastPong = h.session.lastSeen!;
    clock.block(10_000); // the loop was busy past the deadline; the board's PONG sits in the socket
    // After the due timers (a PING tick, the late deadline, which looks again only after a turn of
    // the loop), the loop reads the socket: the PONG to the last PING arrives.
    clock.setTimeout(() => {
      const seq = h.pings().at(-1)!.seq;
      h.session.receive({ type: 'pong', seq, uptimeMs: 1, bootId: 10, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 });
    }, 0);
    clock.advance(0);
    expect(h.session.state).toBe('ready');
    expect(h.changes.filter((c) => c.to === 'lost')).toEqual([]);
    // Really silent from here: lost at the bound after that PONG.
    await clock.advanceAsync(5_000);
    const lost = h.changes.find((c) => c.to === 'lost')!;
    expect(lost.at - h.session.lastSeen!).toBe(3000);
    expect(h.session.lastSeen! - lastPong).toBeGreaterThanOrEqual(10_000);
    h.session.close();
  });

  it('a late deadline with nothing waiting is lost after one more turn of the loop', () => {
    const h = harness();
    h.session.linkUp();
    clock.advance(5_250);
    h.answer = false;
    clock.block(10_000);
    clock.advance(0);
    expect(h.session.state).toBe('lost');
    expect(h.changes.at(-1)!.cause).toMatch(/no PONG/);
    h.session.close();
  });

  it('is lost no later than interval x misses after the last PONG', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(5_250);
    const lastPong = h.session.lastSeen!;
    h.answer = false;
    await clock.advanceAsync(10_000);
    const lost = h.changes.find((c) => c.to === 'lost')!;
    expect(lost).toBeDefined();
    expect(lost.at - lastPong).toBeLessThanOrEqual(3000);
    expect(lost.at - lastPong).toBeGreaterThanOrEqual(2000);
    expect(lost.cause).toMatch(/no PONG/);
    h.session.close();
  });

  it('comes back from lost when the device answers again', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(2_000);
    h.answer = false;
    await clock.advanceAsync(5_000);
    expect(h.session.state).toBe('lost');
    h.answer = true;
    await clock.advanceAsync(3_000);
    expect(h.session.state).toBe('ready');
    expect(h.changes.map((c) => c.to)).toEqual(['ready', 'lost', 'ready']);
    h.session.close();
  });

  it('ignores PONGs with unknown or duplicated sequence numbers for RTT but counts them', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(1_500);
    const before = h.session.rtt.count;
    const pong = { type: 'pong' as const, uptimeMs: 1, bootId: 10, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 };
    h.session.receive({ ...pong, seq: 9999 }); // never sent
    const lastSeq = h.pings().at(-1)!.seq;
    h.session.receive({ ...pong, seq: lastSeq }); // already answered: a duplicate
    expect(h.session.counters.strayPongs).toBe(2);
    expect(h.session.rtt.count).toBe(before);
    expect(h.session.state).toBe('ready');
    h.session.close();
  });

  it('is sleeping (not lost) while the device sleeps, ready after AWAKE', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(1_000);
    h.answer = false;
    h.session.receive({ type: 'sleeping', durationMs: 8000, wakeSources: ['timer', 'serial'] });
    expect(h.session.state).toBe('sleeping');
    const pingsBefore = h.pings().length;
    await clock.advanceAsync(7_000);
    expect(h.session.state).toBe('sleeping');
    expect(h.pings().length).toBe(pingsBefore); // no pings into a sleeping device
    h.answer = true;
    h.session.receive({ type: 'awake', sleptMs: 7000, wakeCauses: ['timer'] });
    await clock.advanceAsync(100);
    expect(h.session.state).toBe('ready');
    expect(h.session.counters.asleepMs).toBe(7000);
    h.session.close();
  });

  it('a device that oversleeps its announced wake time plus grace is lost', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(1_000);
    h.answer = false;
    const sleptAt = clock.now();
    h.session.receive({ type: 'sleeping', durationMs: 3000, wakeSources: ['timer'] });
    await clock.advanceAsync(10_000);
    const lost = h.changes.find((c) => c.to === 'lost')!;
    expect(lost.cause).toMatch(/overslept/);
    expect(lost.at - sleptAt).toBe(3000 + 2000);
    h.session.close();
  });

  it('sends the lease with PINGs only while one is held, and wakes a sleeping device for it', async () => {
    const leases = new LeaseRegistry({ clock });
    const h = harness({ leases });
    h.session.linkUp();
    await clock.advanceAsync(1_500);
    expect(h.pings().every((p) => p.leaseMs === 0)).toBe(true);
    const lease = leases.acquire('dashboard open');
    expect(h.pings().at(-1)!.leaseMs).toBe(4000); // sent at once, not at the next tick
    lease.release();
    await clock.advanceAsync(1_000);
    expect(h.pings().at(-1)!.leaseMs).toBe(0);
    h.session.receive({ type: 'sleeping', durationMs: 8000, wakeSources: ['timer', 'serial'] });
    const rawBefore = h.raw.length; // the handshake's Firmata version query went out first
    leases.acquire('user command');
    expect(h.raw.slice(rawBefore)).toEqual([[0x00]]);
    h.session.close();
    leases.close();
  });

  it('repeats the wake byte each tick until the board says AWAKE (a wake byte can race it into sleep)', async () => {
    const leases = new LeaseRegistry({ clock });
    const h = harness({ leases });
    h.session.linkUp();
    await clock.advanceAsync(1_500);
    h.answer = false;
    h.session.receive({ type: 'sleeping', durationMs: 8000, wakeSources: ['timer', 'serial'] });
    leases.acquire('user command');
    await clock.advanceAsync(3_050);
    expect(h.raw.length).toBeGreaterThanOrEqual(4); // at once, then every 1 s
    h.answer = true;
    h.session.receive({ type: 'awake', sleptMs: 3000, wakeCauses: ['serial'] });
    const after = h.raw.length;
    await clock.advanceAsync(3_000);
    expect(h.raw.length).toBe(after); // awake: no more wake bytes
    h.session.close();
    leases.close();
  });

  it('a reboot while ready goes through init, restore (rebooted) and back to ready, counted by cause', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(1_500);
    h.bootId = 11;
    h.session.receive(hello({ bootId: 11, reply: false, resetCauses: ['watchdog'], stateSurvived: true, pinsRestored: true }));
    expect(h.session.state).toBe('init');
    await clock.advanceAsync(100);
    expect(h.session.state).toBe('ready');
    expect(h.restores.at(-1)).toEqual([11, true]);
    expect(h.session.counters.reboots.watchdog).toBe(1);
    expect(h.changes.map((c) => c.to)).toEqual(['ready', 'init', 'ready']);
    h.session.close();
  });

  it('asks for HELLO again when a PONG shows a boot id it has not seen', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(1_500);
    h.bootId = 12; // rebooted while we were not looking; its boot HELLO was lost
    await clock.advanceAsync(2_000);
    expect(h.sent.filter((m) => m.type === 'hello-request').length).toBe(2);
    expect(h.restores.at(-1)).toEqual([12, true]);
    expect(h.session.bootId).toBe(12);
    h.session.close();
  });

  it('link down is lost at once; link up starts a new handshake', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(1_500);
    h.session.linkDown('pty closed');
    expect(h.changes.at(-1)).toMatchObject({ to: 'lost', cause: 'link down: pty closed' });
    const sentBefore = h.sent.length;
    await clock.advanceAsync(5_000);
    expect(h.sent.length).toBe(sentBefore); // nothing sent into a closed link
    h.session.linkUp();
    await clock.advanceAsync(100);
    expect(h.session.state).toBe('ready');
    h.session.close();
  });

  it('with a phi-accrual detector, tolerates a jittery link that the fixed bound calls lost', async () => {
    async function lostCount(detector?: PhiAccrualDetector): Promise<number> {
      const h = harness({ detector });
      h.session.linkUp();
      // Jittery: RTT between 20 ms and 2.5 s, from a fixed-seed sequence (the same for both).
      let s = 7;
      for (let i = 0; i < 120; i++) {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        h.rtt = 20 + (s % 2500);
        await clock.advanceAsync(1_000);
      }
      h.session.close();
      return h.changes.filter((c) => c.to === 'lost').length;
    }
    const fixed = await lostCount();
    const phi = await lostCount(new PhiAccrualDetector({ intervalMs: 1000, misses: 3, threshold: 8 }));
    expect(fixed).toBeGreaterThan(0);
    expect(phi).toBe(0);
  });

  it('a device that never answers after the link opens is lost after the handshake time, not before', async () => {
    const h = harness();
    h.answer = false;
    h.session.linkUp();
    await clock.advanceAsync(4_999);
    expect(h.session.state).toBe('init'); // an Uno reset by DTR: ~1 s bootloader, ~2 s StandardFirmata's blink
    await clock.advanceAsync(1);
    expect(h.changes.at(-1)).toMatchObject({ to: 'lost', cause: 'no answer since the link came up' });
    expect(h.sent.filter((m) => m.type === 'hello-request').length).toBeGreaterThanOrEqual(3);
    h.session.close();
  });

  it('close() ends in disconnected and leaves no timers', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(1_500);
    h.session.close();
    expect(h.session.state).toBe('disconnected');
    await clock.advanceAsync(100); // let scripted replies in flight land (ignored)
    expect(clock.pending).toBe(0);
    expect(h.session.state).toBe('disconnected');
  });
});

describe('DeviceSession after a reconnect', () => {
  beforeEach(() => {
    clock = new ManualClock();
  });

  it('a board heard before but silent on the new link is lost after the handshake time, not init forever', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(100);
    expect(h.session.state).toBe('ready');
    h.session.linkDown('dropped');
    h.answer = false; // a middlebox that accepts the new connection and forwards nothing
    const unanswered: string[] = [];
    h.session.on('unanswered', (cause) => unanswered.push(cause));
    h.session.linkUp();
    // Lost stays lost until the board answers: no `init` for a connection that carries nothing.
    expect(h.session.state).toBe('lost');
    await clock.advanceAsync(4_999); // the handshake time (5 s by default)
    expect(unanswered).toEqual([]);
    await clock.advanceAsync(1);
    expect(unanswered).toEqual(['still no answer since the link came up']);
    expect(h.session.state).toBe('lost');
    h.answer = true; // the path works again: the HELLO_REQUEST of the next tick gets through
    await clock.advanceAsync(1_100);
    expect(h.session.state).toBe('ready');
    expect(h.changes.map((c) => c.to)).toEqual(['ready', 'lost', 'ready']);
    expect(h.changes.at(-1)).toMatchObject({ from: 'lost', to: 'ready', cause: 'answered again' });
    h.session.close();
  });

  it('reopen attempts during an outage (link up, nothing, link down, ...) change nothing: lost once, then ready when it answers', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(100);
    h.session.linkDown('path gone');
    h.answer = false;
    const lostCount = h.session.counters.lostCount;
    for (let attempt = 0; attempt < 5; attempt++) {
      h.session.linkUp();
      await clock.advanceAsync(5_000);
      h.session.linkDown('reopening: still no answer since the link came up');
      await clock.advanceAsync(1_000);
    }
    expect(h.session.counters.lostCount).toBe(lostCount);
    h.answer = true;
    h.session.linkUp();
    await clock.advanceAsync(200);
    expect(h.changes.map((c) => c.to)).toEqual(['ready', 'lost', 'ready']);
    h.session.close();
  });

  it('a first link that never answers is still init, then lost, and says unanswered', async () => {
    const h = harness();
    const unanswered: string[] = [];
    h.session.on('unanswered', (cause) => unanswered.push(cause));
    h.answer = false;
    h.session.linkUp();
    await clock.advanceAsync(5_000);
    expect(h.changes.map((c) => c.to)).toEqual(['lost']); // it starts in init
    expect(unanswered).toEqual(['no answer since the link came up']);
    h.session.close();
  });
});
