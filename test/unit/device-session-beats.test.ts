import { beforeEach, describe, expect, it } from 'vitest';
import { DeviceSession, type Hello, type StateChange } from '../../host/session/device-session.ts';
import { LeaseRegistry } from '../../host/session/lease-registry.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { helloMessage } from '../support/hello-message.ts';
import type { HostMessage } from '../../shared/protocol/messages.ts';

// A DeviceSession and a scripted board that does what shared/PROTOCOL.md's "Beats" says a
// device with the beats capability does: BEATS is a PING (PONG with its seq) that also starts
// a BEAT every interval_ms until for_ms after it; a later BEATS replaces the schedule.

let clock: ManualClock;

/** A HELLO that says the board can send BEATs. */
function hello(overrides: Partial<Hello> = {}): Hello {
  return helloMessage({ capabilities: { watchdog: true, sleep: true, state: true, pinRestore: true, beats: true }, ...overrides });
}

type Beats = Extract<HostMessage, { type: 'beats' }>;

function harness(options: { beats?: boolean; pingIntervalMs?: number; leases?: LeaseRegistry; pingsWanted?: () => boolean; hostTimeoutMs?: number } = {}) {
  const sent: Array<HostMessage & { at: number }> = [];
  const changes: StateChange[] = [];
  /** The board hears the host (its input works). */
  let hears = true;
  /** The board runs (answers, beats). */
  let runs = true;
  let bootId = 10;
  let helloFields: Partial<Hello> = {};
  let beatTimer: ReturnType<ManualClock['setTimeout']> | undefined;
  const heartbeat = (type: 'pong' | 'beat', seq: number) =>
    ({ type, seq, uptimeMs: 1, bootId, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 }) as const;
  const startBeats = (m: Beats) => {
    if (beatTimer !== undefined) clock.clearTimeout(beatTimer);
    beatTimer = undefined;
    if (m.intervalMs === 0 || m.forMs === 0) return;
    const until = clock.now() + m.forMs;
    const beat = () => {
      beatTimer = undefined;
      if (!runs || clock.now() > until) return;
      session.receive(heartbeat('beat', m.seq));
      beatTimer = clock.setTimeout(beat, m.intervalMs);
    };
    beatTimer = clock.setTimeout(beat, m.intervalMs);
  };
  const session = new DeviceSession({
    clock,
    pingIntervalMs: options.pingIntervalMs ?? 1000,
    misses: 3,
    beats: options.beats,
    leases: options.leases,
    pingsWanted: options.pingsWanted,
    deviceConfig: options.hostTimeoutMs === undefined ? undefined : { watchdogMs: 2000, policy: 'stay', hostTimeoutMs: options.hostTimeoutMs, sleepMs: 8000, awakeMs: 1000 },
    send: (m) => {
      sent.push({ ...m, at: clock.now() });
      if (!hears || !runs) return;
      if (m.type === 'ping' || m.type === 'beats') {
        clock.setTimeout(() => runs && session.receive(heartbeat('pong', m.seq)), 20);
        if (m.type === 'beats') startBeats(m);
      }
      if (m.type === 'hello-request') clock.setTimeout(() => runs && session.receive(hello({ ...helloFields, bootId })), 20);
      if (m.type === 'config-set') clock.setTimeout(() => runs && session.receive({ type: 'config', config: m.config }), 20);
      if (m.type === 'config-get') {
        const config = { watchdogMs: 2000, policy: 'stay', hostTimeoutMs: helloFields.hostTimeoutMs ?? 0, sleepMs: 8000, awakeMs: 1000 } as const;
        clock.setTimeout(() => runs && session.receive({ type: 'config', config }), 20);
      }
    },
    sendRaw: () => {},
  });
  session.on('state', (c) => changes.push(c));
  return {
    session,
    sent,
    changes,
    set hears(v: boolean) {
      hears = v;
    },
    set runs(v: boolean) {
      runs = v;
    },
    set bootId(v: number) {
      bootId = v;
    },
    set hello(v: Partial<Hello>) {
      helloFields = v;
    },
    of: <K extends HostMessage['type']>(type: K, from = 0) => sent.filter((m) => m.type === type && m.at >= from) as Array<Extract<HostMessage, { type: K }> & { at: number }>,
    close() {
      if (beatTimer !== undefined) clock.clearTimeout(beatTimer);
      session.close();
    },
  };
}

describe('DeviceSession with a board that sends BEATs', () => {
  beforeEach(() => {
    clock = new ManualClock();
  });

  it('asks for BEATs instead of PINGing: ready on the PONG, then one BEATS every 30 intervals, no PING, ready throughout', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(100);
    expect(h.session.state).toBe('ready');
    const first = h.of('beats')[0]!;
    expect(first).toMatchObject({ type: 'beats', leaseMs: 0, intervalMs: 1000, forMs: 90_000 });
    await clock.advanceAsync(120_000);
    expect(h.session.state).toBe('ready');
    expect(h.changes.map((c) => c.to)).toEqual(['ready']);
    expect(h.of('ping')).toHaveLength(0);
    // 120 s: the first BEATS and one every 30 s after it.
    const renewals = h.of('beats').map((m) => m.at);
    expect(renewals).toHaveLength(5);
    for (let i = 1; i < renewals.length; i++) expect(renewals[i]! - renewals[i - 1]!).toBe(30_000);
    // A heartbeat a second: a BEAT, or the PONG to a renewal (which restarts the beats' schedule).
    expect(h.session.counters.pongs).toBe(5);
    expect(h.session.counters.beats + h.session.counters.pongs).toBeGreaterThanOrEqual(120);
    h.close();
  });

  it('a board whose BEATs stop is lost at the bound after the last one, and asked for at once and every interval after', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(15_500);
    expect(h.session.state).toBe('ready');
    const lastSeen = h.session.lastSeen!;
    h.runs = false;
    await clock.advanceAsync(5000);
    const lost = h.changes.find((c) => c.to === 'lost')!;
    expect(lost.at).toBe(lastSeen + 3000);
    expect(lost.cause).toMatch(/no PONG for 3000 ms/);
    const requests = h.of('hello-request', lost.at).map((m) => m.at);
    expect(requests[0]).toBe(lost.at);
    expect(requests.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < requests.length; i++) expect(requests[i]! - requests[i - 1]!).toBe(1000);
    // It runs again: HELLO, BEATS, ready.
    h.runs = true;
    await clock.advanceAsync(1100);
    expect(h.session.state).toBe('ready');
    h.close();
  });

  it('a board that still beats but no longer hears the host is lost after 3 renewals in a row go unanswered', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(5000);
    const cutAt = clock.now();
    h.hears = false; // its beats go on until for_ms after the last BEATS it heard
    await clock.advanceAsync(40_000);
    const lost = h.changes.find((c) => c.to === 'lost')!;
    expect(lost.cause).toMatch(/3 PINGs in a row unanswered/);
    // The renewal due 30 s after the first BEATS, then two more an interval apart, then lost an interval later.
    const firstAt = h.of('beats')[0]!.at;
    const after = h.of('beats', cutAt).map((m) => m.at - firstAt);
    expect(after.slice(0, 3)).toEqual([30_000, 31_000, 32_000]);
    expect(lost.at - firstAt).toBe(33_000);
    expect(h.session.counters.beats).toBeGreaterThan(10); // it was beating all along
    h.close();
  });

  it('renews every interval while a keep-awake lease is held (the lease rides on it), every 10 intervals again once released', async () => {
    const leases = new LeaseRegistry({ clock });
    const h = harness({ leases });
    h.session.linkUp();
    await clock.advanceAsync(2500);
    const lease = leases.acquire('test');
    const heldAt = clock.now();
    await clock.advanceAsync(5000);
    const held = h.of('beats', heldAt);
    expect(held[0]!.at).toBe(heldAt); // carried at once
    expect(held.length).toBeGreaterThanOrEqual(5);
    for (const m of held) expect(m.leaseMs).toBe(4000);
    for (let i = 2; i < held.length; i++) expect(held[i]!.at - held[i - 1]!.at).toBe(1000);
    lease.release();
    const releasedAt = clock.now();
    await clock.advanceAsync(25_000);
    const after = h.of('beats', releasedAt + 1).map((m) => m.at);
    expect(after.length).toBeLessThanOrEqual(3);
    expect(h.session.state).toBe('ready');
    h.close();
  });

  it('renews within an interval when something needs a PONG (writes to confirm), every interval while it does', async () => {
    let wanted = false;
    const h = harness({ pingsWanted: () => wanted });
    h.session.linkUp();
    await clock.advanceAsync(3000);
    const from = clock.now();
    wanted = true;
    h.session.hurry();
    await clock.advanceAsync(3000);
    const sent = h.of('beats', from).map((m) => m.at);
    expect(sent[0]! - from).toBeLessThanOrEqual(1000);
    expect(sent.length).toBeGreaterThanOrEqual(3);
    wanted = false;
    const quietFrom = clock.now() + 1000;
    await clock.advanceAsync(8000);
    expect(h.of('beats', quietFrom)).toHaveLength(0);
    h.close();
  });

  it.each([
    ['the HELLO says', { hostTimeoutMs: 6000 }, undefined],
    ['the configuration is about to set', { hostTimeoutMs: 0 }, 6000],
  ])('renews at least every third of a host timeout %s (the board takes the host for lost after it)', async (_what, helloFields, configured) => {
    const h = harness({ hostTimeoutMs: configured });
    h.hello = helloFields;
    h.session.linkUp();
    await clock.advanceAsync(20_000);
    const renewals = h.of('beats').map((m) => m.at);
    expect(renewals.length).toBeGreaterThanOrEqual(9);
    for (let i = 1; i < renewals.length; i++) expect(renewals[i]! - renewals[i - 1]!).toBe(2000);
    expect(h.of('beats')[0]!.forMs).toBe(6000);
    expect(h.session.state).toBe('ready');
    h.close();
  });

  it('a BEAT with another boot id: its boot HELLO was missed, it is asked for again', async () => {
    const h = harness();
    h.session.linkUp();
    await clock.advanceAsync(3000);
    const before = h.of('hello-request').length;
    h.session.receive({ type: 'beat', seq: 0, uptimeMs: 5, bootId: 11, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 });
    expect(h.of('hello-request')).toHaveLength(before + 1);
    h.close();
  });

  it.each<[string, { beats?: boolean; pingIntervalMs?: number }]>([
    ['beats: false', { beats: false }],
    ['an interval a u14 cannot carry (20 s)', { pingIntervalMs: 20_000 }],
  ])('PINGs every interval as for any board with %s', async (_what, options) => {
    const h = harness(options);
    const interval = options.pingIntervalMs ?? 1000;
    h.session.linkUp();
    await clock.advanceAsync(10 * interval + 100);
    expect(h.session.state).toBe('ready');
    expect(h.of('beats')).toHaveLength(0);
    expect(h.of('ping').length).toBeGreaterThanOrEqual(10);
    expect(h.session.counters.beats).toBe(0);
    h.close();
  });
});
