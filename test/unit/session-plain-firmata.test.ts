import { beforeEach, describe, expect, it } from 'vitest';
import { DeviceSession, type RebootInfo, type StateChange } from '../../host/session/device-session.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import type { HostMessage } from '../../shared/protocol/messages.ts';

// DeviceSession with a scripted plain Firmata board (StandardFirmata-like): it ignores
// keepalive frames, answers each REPORT_VERSION query after `rttMs`, and can go silent.

// One ManualClock per test (made new in beforeEach): time moves only when a test advances it.
let clock = new ManualClock();

interface Options {
  pingIntervalMs?: number;
  misses?: number;
  helloAttempts?: number;
  handshakeTimeoutMs?: number;
  restorePlain?: (rebooted: boolean) => Promise<{ forgot: boolean }>;
  rttMs?: number;
}

function plainBoard(options: Options = {}) {
  const changes: StateChange[] = [];
  const reboots: RebootInfo[] = [];
  const restores: boolean[] = [];
  const sent: HostMessage[] = [];
  let answering = true;
  const session = new DeviceSession({
    clock,
    pingIntervalMs: options.pingIntervalMs ?? 1000,
    misses: options.misses ?? 3,
    helloAttempts: options.helloAttempts,
    handshakeTimeoutMs: options.handshakeTimeoutMs,
    send: (m) => sent.push(m), // keepalive frames: ignored, as StandardFirmata ignores unknown sysex
    sendRaw: (bytes) => {
      if (bytes[0] === 0xf9) clock.setTimeout(() => answering && session.firmataActivity('version'), options.rttMs ?? 20);
    },
    restorePlain: async (rebooted) => {
      restores.push(rebooted);
      return (await options.restorePlain?.(rebooted)) ?? { forgot: false };
    },
  });
  session.on('state', (c) => changes.push(c));
  session.on('reboot', (r) => reboots.push(r));
  return {
    session,
    changes,
    reboots,
    restores,
    sent,
    set answering(v: boolean) {
      answering = v;
    },
    path: () => changes.map((c) => `${c.from}->${c.to}`),
  };
}

describe('DeviceSession with a plain Firmata board', () => {
  beforeEach(() => {
    clock = new ManualClock();
  });

  // The tie the issue found: with 1000 ms x 3 attempts the switch to plain Firmata came at the
  // same tick as the 3000 ms handshake deadline, and Firmata answers did not count as contact.
  for (const [pingIntervalMs, helloAttempts, misses] of [
    [1000, 3, 3],
    [200, 2, 3],
    [1000, 10, 2],
    [3000, 3, 2],
    [50, 5, 3],
  ] as const) {
    it(`is ready without a false lost at start (ping ${pingIntervalMs} ms, ${helloAttempts} attempts, ${misses} misses)`, async () => {
      const b = plainBoard({ pingIntervalMs, helloAttempts, misses });
      b.session.linkUp();
      await clock.advanceAsync(helloAttempts * 25 + 50);
      expect(b.session.protocol).toBe('firmata');
      expect(b.session.state).toBe('ready');
      await clock.advanceAsync(20_000);
      expect(b.path()).toEqual(['init->ready']);
      expect(b.sent.filter((m) => m.type === 'hello-request').length).toBeGreaterThanOrEqual(helloAttempts);
      b.session.close();
    });
  }

  it('Firmata answers are contact even before the board is known to be plain: no "no answer" lost at the handshake time', async () => {
    // A slow link (900 ms round trips): deciding takes longer than the 3000 ms handshake time.
    const b = plainBoard({ helloAttempts: 8, rttMs: 900 });
    b.session.linkUp();
    await clock.advanceAsync(3_100);
    expect(b.session.protocol).toBe('unknown');
    expect(b.session.state).toBe('init');
    await clock.advanceAsync(10_000);
    expect(b.session.protocol).toBe('firmata');
    expect(b.path()).toEqual(['init->ready']);
    b.session.close();
  });

  it('a silent board is still lost after the handshake time, and answers then make it ready', async () => {
    const b = plainBoard();
    b.answering = false;
    b.session.linkUp();
    await clock.advanceAsync(4_999);
    expect(b.session.state).toBe('init'); // the default handshake time: 5 s
    await clock.advanceAsync(1);
    expect(b.changes.at(-1)).toMatchObject({ to: 'lost', cause: 'no answer since the link came up' });
    b.answering = true;
    await clock.advanceAsync(1_100);
    expect(b.session.protocol).toBe('firmata');
    expect(b.session.state).toBe('ready');
    b.session.close();
  });

  it('an unasked announcement is one reboot: back to init, pins replayed (restorePlain(true)), ready only once that finished', async () => {
    let finishReplay!: () => void;
    const b = plainBoard({
      restorePlain: (rebooted) => (rebooted ? new Promise((resolve) => (finishReplay = () => resolve({ forgot: false }))) : Promise.resolve({ forgot: false })),
    });
    b.session.linkUp();
    await clock.advanceAsync(200);
    expect(b.session.state).toBe('ready');
    b.session.firmataActivity('version'); // the announcement: version report...
    b.session.firmataBooted(); // ...and its firmware name, unasked
    b.session.firmataBooted(); // the same boot's name again (e.g. a program's query overtaken): not a second reboot
    expect(b.reboots).toEqual([{ bootId: null, previousBootId: null, causes: [], stateSurvived: false }]);
    expect(b.session.state).toBe('init');
    await clock.advanceAsync(2_000);
    expect(b.session.state).toBe('init'); // not ready before the pins are back
    finishReplay();
    await clock.advanceAsync(1);
    expect(b.session.state).toBe('ready');
    expect(b.restores).toEqual([false, true]);
    expect(b.session.counters.reboots.unknown).toBe(1);
    expect(b.path()).toEqual(['init->ready', 'ready->init', 'init->ready']);
    b.session.close();
  });

  it('after lost, its next answer is checked before ready (restorePlain(false)); a board that forgot its pins counts a reboot', async () => {
    const b = plainBoard({ restorePlain: async () => ({ forgot: b.restores.length > 1 }) });
    b.session.linkUp();
    await clock.advanceAsync(200);
    b.answering = false;
    await clock.advanceAsync(3_500);
    expect(b.session.state).toBe('lost');
    expect(b.changes.at(-1)!.cause).toMatch(/^no Firmata answer for \d+ ms/);
    b.answering = true;
    await clock.advanceAsync(1_100);
    expect(b.session.state).toBe('ready');
    expect(b.restores).toEqual([false, false]);
    expect(b.reboots).toHaveLength(1);
    expect(b.changes.at(-1)!.cause).toBe('pins restored after a reboot');
    b.session.close();
  });

  it('an announcement while it is still being identified is just contact', async () => {
    const b = plainBoard();
    b.answering = false;
    b.session.linkUp();
    b.session.firmataActivity('version');
    b.session.firmataBooted();
    expect(b.reboots).toEqual([]);
    expect(b.session.protocol).toBe('unknown');
    b.session.close();
  });

  it('close() leaves no timers', async () => {
    const b = plainBoard();
    b.session.linkUp();
    await clock.advanceAsync(1_500);
    b.session.close();
    await clock.advanceAsync(100);
    expect(clock.pending).toBe(0);
  });
});
