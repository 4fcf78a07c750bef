import { afterEach, describe, expect, it } from 'vitest';
import { EspruinoBoard, type EspruinoBoardOptions } from '../../emulator/espruino/espruino-board.ts';
import { espruinoConsoleLogger } from '../../host/espruino/espruino-console.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { EspruinoReplTransport } from '../../host/espruino/espruino-repl-transport.ts';
import { readEspruinoModule } from '../../host/espruino/module-source.ts';
import { DeviceLink, type DeviceLinkOptions } from '../../host/link/device-link.ts';
import type { RebootInfo } from '../../host/session/device-session.ts';
import { encodeFrame, FrameSplitter } from '../../shared/protocol/index.ts';
import type { DeviceConfig, DeviceMessage } from '../../shared/protocol/messages.ts';
import { activeResources, leakedSince } from '../support/handles.ts';
import { waitFor } from '../support/wait-for.ts';

// The host suite for sessions against the Espruino module: a real DeviceLink whose transport
// is the Espruino stand-in behind the REPL framing, in real time with short intervals.

const PING_MS = 150;
const MISSES = 3;
const BOUND_MS = PING_MS * MISSES;
const MODULE = readEspruinoModule();

interface Rig {
  board: EspruinoBoard;
  link: DeviceLink;
  consoleText: string[];
}

const rigs: Rig[] = [];

async function rig(options: Partial<DeviceLinkOptions> = {}, boardOptions: EspruinoBoardOptions = {}, logger?: RecordingLogger): Promise<Rig> {
  const board = new EspruinoBoard({ program: MODULE, ...boardOptions });
  const consoleText: string[] = [];
  const logConsole = logger ? espruinoConsoleLogger(logger) : () => {};
  const link = new DeviceLink({
    target: 'espruino-stand-in',
    backoff: { initialMs: 50, maxMs: 400 },
    requestTimeoutMs: 2000,
    logger,
    ...options,
    transportFactory: () =>
      new EspruinoReplTransport(board.createTransport(), {
        onConsole: (t) => {
          consoleText.push(t);
          logConsole(t);
        },
      }),
    session: { pingIntervalMs: PING_MS, misses: MISSES, handshakeTimeoutMs: 1000, ...options.session },
  });
  const r = { board, link, consoleText };
  rigs.push(r);
  link.start();
  await link.ready(5000);
  return r;
}


function nextReboot(link: DeviceLink, timeoutMs = 5000): Promise<RebootInfo> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reboot within ${timeoutMs} ms`)), timeoutMs);
    link.once('reboot', (info) => {
      clearTimeout(timer);
      resolve(info);
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterEach(async () => {
  for (const r of rigs.splice(0)) {
    await r.link.close();
    r.board.close();
  }
});

const SLEEPY: DeviceConfig = { watchdogMs: 2000, policy: 'sleep', hostTimeoutMs: 0, sleepMs: 3000, awakeMs: 300 };

describe('DeviceLink on the Espruino module (stand-in, real time)', () => {
  it('gets ready; REPL text stays on the console side', async () => {
    const { link, consoleText } = await rig();
    expect(link.state).toBe('ready');
    expect(link.session.hello).toMatchObject({ name: 'tether-espruino PICO_R1_3', stateSize: 32 });
    expect(link.session.hello!.capabilities.beats).toBe(true);
    // The host asked for BEATs (its PINGs then come every 10 intervals): heartbeats either way.
    await waitFor(() => link.stats().beats >= 3, { timeoutMs: PING_MS * 5, what: '3 BEATs' });
    expect(link.state).toBe('ready');
    expect(link.session.counters.deviceErrors).toBe(0);
    // Nothing but frames reached the session (no Firmata fallback from REPL text).
    expect(link.session.protocol).toBe('tether');
    expect(consoleText.join('')).not.toContain('Uncaught');
  });

  it('a frozen board is lost within interval x misses; its watchdog reset brings it back ready', async () => {
    const { board, link } = await rig({
      session: { deviceConfig: { watchdogMs: 1000, policy: 'stay', hostTimeoutMs: 0, sleepMs: 8000, awakeMs: 1000 } },
    });
    await waitFor(() => board.stats.watchdog.enabled && board.stats.watchdog.timeoutMs === 1000, {
      timeoutMs: 2000,
      what: 'the 1 s watchdog of the CONFIG_SET on the board',
    });
    board.freeze();
    const lost = await link.nextState('lost', 3000);
    expect(lost.at - link.session.lastSeen!).toBeLessThanOrEqual(BOUND_MS + 50);
    await link.nextState('ready', 5000); // the 1 s watchdog resets the board
    expect(board.stats.resets.watchdog).toBe(1);
    expect(link.stats().reboots.watchdog).toBe(1);
  });

  it('a sleeping board is sleeping, not lost; writeState meanwhile is delivered after it wakes', async () => {
    const { board, link } = await rig({ session: { deviceConfig: SLEEPY } });
    await link.nextState('sleeping', 3000);
    await sleep(BOUND_MS * 2); // a fixed wait on purpose: well past the lost bound, it must still be sleeping
    expect(link.state).toBe('sleeping');
    expect(board.runMode).toBe('sleeping');

    await link.writeState(4, Uint8Array.from([9, 8, 7])); // wakes the board, then the frame
    expect(board.stats.rxLostAsleep).toBeGreaterThan(0); // the wake byte was lost, as on hardware
    expect(board.stats.sleeps).toBeGreaterThanOrEqual(1);
    expect([...(await link.readState(4, 3))]).toEqual([9, 8, 7]);
    expect(link.stats().lostCount).toBe(0);
  });

  it('a lease keeps it awake; releasing the lease lets it sleep', async () => {
    const { board, link } = await rig({ session: { deviceConfig: SLEEPY } });
    const lease = link.acquireLease('dashboard open');
    if (link.state !== 'ready') await link.nextState('ready', 3000);
    const sleepsBefore = board.stats.sleeps;
    await sleep(1500); // a fixed wait on purpose: longer than an awake period, and no sleep
    expect(board.stats.sleeps).toBe(sleepsBefore);
    expect(link.state).toBe('ready');
    lease.release();
    await link.nextState('sleeping', 3000);
    expect(board.runMode).toBe('sleeping');
  });

  it('state registers survive a soft reset, and the host replays them after a power cycle', async () => {
    const { board, link } = await rig();
    await link.writeState(0, Uint8Array.from([1, 2, 3, 200]));

    let rebooted = nextReboot(link);
    board.reset();
    expect(await rebooted).toMatchObject({ causes: ['external'], stateSurvived: true });
    await link.nextState('ready');
    expect([...(await link.readState(0, 4))]).toEqual([1, 2, 3, 200]);

    const before = link.stats();
    rebooted = nextReboot(link);
    board.powerCycle();
    expect(await rebooted).toMatchObject({ causes: ['power-on'], stateSurvived: false });
    await link.nextState('ready');
    expect(link.stats().replays - before.replays).toBe(1);
    expect(link.stats().reboots['power-on'] - before.reboots['power-on']).toBe(1);
    // The module kept nothing (power lost): what reads back is the host's replay.
    expect([...(await link.readState(0, 4))]).toEqual([1, 2, 3, 200]);
  });

  it('close() leaves no timers or handles behind', async () => {
    const baseline = activeResources();
    const { board, link } = await rig({ session: { deviceConfig: SLEEPY } });
    await link.nextState('sleeping', 3000);
    await link.close();
    board.close();
    rigs.length = 0;
    expect(await leakedSince(baseline)).toEqual({});
  });
});

describe('Espruino boards as they are (stand-in, real time)', () => {
  it('a build without deep sleep given policy sleep: the host sets stay (one warning), the board stays ready and nothing throws', async () => {
    const logger = new RecordingLogger();
    const { board, link, consoleText } = await rig({ session: { deviceConfig: SLEEPY } }, { apis: { deepSleep: false } }, logger);
    expect(link.session.hello!.capabilities.sleep).toBe(false);
    await sleep(1500); // awake_ms (300) many times over
    expect(link.state).toBe('ready');
    expect(board.stats.sleeps).toBe(0);
    expect(consoleText.join('')).not.toMatch(/Uncaught/);
    expect(board.evaluate('tether.running()')).toBe(true);
    const warnings = logger.records.filter((r) => r.level === 'warn' && /cannot sleep/.test(r.msg ?? ''));
    expect(warnings).toHaveLength(1);
    board.reset(); // a reboot: compared again, not warned again, not written again
    await link.nextState('ready', 3000);
    expect(logger.records.filter((r) => r.level === 'warn' && /cannot sleep/.test(r.msg ?? ''))).toHaveLength(1);
    expect(board.evaluate('tether.stop(); tether.running()')).toBe(false);
  });

  it('config is written to flash once per real change, however often the board reboots (freezes ended by its watchdog)', async () => {
    const config: DeviceConfig = { watchdogMs: 1000, policy: 'stay', hostTimeoutMs: 0, sleepMs: 8000, awakeMs: 1000 };
    const { board, link } = await rig({ session: { deviceConfig: config } });
    await sleep(PING_MS * 2);
    for (let i = 0; i < 3; i++) {
      board.freeze();
      await link.nextState('lost', 3000);
      await link.nextState('ready', 5000);
      await sleep(PING_MS * 2);
    }
    expect(board.stats.resets.watchdog).toBe(3);
    // One write per boot (its boot id) plus the one real change.
    expect(board.stats.storageWrites['tether.cfg']).toBe(board.stats.boots + 1);
  });

  it('errors the board prints reach the log at warn level', async () => {
    const logger = new RecordingLogger();
    const { board } = await rig({}, {}, logger);
    board.evaluate('setTimeout(function () { nope(); }, 10)');
    const warning = 'Espruino board reports: Uncaught ReferenceError: nope is not defined';
    await waitFor(() => logger.records.some((r) => r.level === 'warn' && r.msg === warning), {
      what: 'the board error at warn',
      timeoutMs: 5000,
      detail: () => JSON.stringify(logger.records.slice(-5).map((r) => r.msg)),
    });
  });
});

describe('the module\'s own heartbeat in real time (BEATS / BEAT, stand-in on the system clock)', () => {
  it('BEATS(interval 200, for 1000): PONG with the seq, then 4-5 BEATs about 200 ms apart that stop after for_ms; a PING leaves them running', async () => {
    const board = new EspruinoBoard({ program: MODULE });
    const transport = new EspruinoReplTransport(board.createTransport());
    const splitter = new FrameSplitter({ from: 'device' });
    const received: Array<{ at: number; message: DeviceMessage }> = [];
    transport.on('data', (bytes) => {
      for (const event of splitter.push(bytes)) if (event.kind === 'message') received.push({ at: performance.now(), message: event.message as DeviceMessage });
    });
    try {
      await transport.open();
      await waitFor(() => received.some((r) => r.message.type === 'hello'), { what: 'the boot HELLO', timeoutMs: 3000 });
      const of = <K extends DeviceMessage['type']>(type: K) =>
        received.filter((r) => r.message.type === type) as Array<{ at: number; message: Extract<DeviceMessage, { type: K }> }>;

      transport.write(encodeFrame({ type: 'beats', seq: 321, leaseMs: 0, intervalMs: 200, forMs: 1000 }));
      const pong = await waitFor(() => of('pong')[0], { what: 'the PONG to BEATS', timeoutMs: 2000 });
      expect(pong.message).toMatchObject({ seq: 321, bootId: 1 });
      await waitFor(() => of('beat').length >= 2, { what: 'two BEATs', timeoutMs: 2000 });
      transport.write(encodeFrame({ type: 'ping', seq: 322, leaseMs: 0 }));
      await waitFor(() => of('pong').length >= 2, { what: 'the PONG to the PING', timeoutMs: 2000 });
      // Until the board's own clock is two intervals past for_ms: no fixed sleep.
      const end = board.stats.uptimeMs - (performance.now() - pong.at) + 1000 + 400;
      await waitFor(() => board.stats.uptimeMs >= end, { what: 'the board clock past for_ms', timeoutMs: 4000 });

      const beats = of('beat');
      expect(of('pong').map((p) => p.message.seq)).toEqual([321, 322]);
      expect(beats.length).toBeGreaterThanOrEqual(4);
      expect(beats.length).toBeLessThanOrEqual(5);
      for (const b of beats) expect(b.message).toMatchObject({ seq: 321, bootId: 1, stateValid: true });
      // The board's uptime stamps: one interval apart (the PING in between changed nothing).
      const stamps = [pong.message.uptimeMs, ...beats.map((b) => b.message.uptimeMs)];
      for (let i = 1; i < stamps.length; i++) {
        expect(stamps[i]! - stamps[i - 1]!).toBeGreaterThanOrEqual(195);
        expect(stamps[i]! - stamps[i - 1]!).toBeLessThanOrEqual(260);
      }
      expect(beats.at(-1)!.message.uptimeMs - pong.message.uptimeMs).toBeLessThanOrEqual(1000);
    } finally {
      await transport.close();
      board.close();
    }
  });
});
