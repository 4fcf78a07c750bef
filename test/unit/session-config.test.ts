import { beforeEach, describe, expect, it } from 'vitest';
import { DeviceSession, type Hello } from '../../host/session/device-session.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import type { Capabilities, DeviceConfig, HostMessage } from '../../shared/protocol/messages.ts';

// The session keeps the device's configuration: it sends CONFIG_SET only when what the device
// reports differs from what is wanted, and never asks for what the device's HELLO says it
// cannot do.

// One ManualClock per test (made new in beforeEach): time moves only when a test advances it.
let clock = new ManualClock();

const ALL: Capabilities = { watchdog: true, sleep: true, state: true, pinRestore: true, beats: false };
const ESPRUINO_LINUX: Capabilities = { watchdog: true, sleep: false, state: true, pinRestore: false, beats: false };

/** A device that keeps a config, answers HELLO_REQUEST, CONFIG_GET, CONFIG_SET and PING. */
function device(stored: DeviceConfig, capabilities: Capabilities, wanted: DeviceConfig) {
  const sent: HostMessage[] = [];
  const logger = new RecordingLogger();
  let config = { ...stored };
  let bootId = 1;
  const hello = (reply: boolean): Hello => ({
    type: 'hello',
    fwMajor: 1,
    fwMinor: 0,
    bootId,
    resetCauses: reply ? [] : ['watchdog'],
    stateSurvived: true,
    pinsRestored: false,
    reply,
    watchdogMs: config.watchdogMs,
    policy: config.policy,
    hostTimeoutMs: config.hostTimeoutMs,
    capabilities,
    stateSize: 32,
    name: 'board',
  });
  const session = new DeviceSession({
    clock,
    logger,
    deviceConfig: wanted,
    send: (m) => {
      sent.push(m);
      const reply = (fn: () => void) => clock.setTimeout(fn, 5);
      if (m.type === 'hello-request') reply(() => session.receive(hello(true)));
      if (m.type === 'config-get') reply(() => session.receive({ type: 'config', config }));
      if (m.type === 'config-set') {
        config = { ...m.config, watchdogMs: Math.floor(m.config.watchdogMs / 1000) * 1000 || m.config.watchdogMs };
        reply(() => session.receive({ type: 'config', config }));
      }
      if (m.type === 'ping') {
        reply(() =>
          session.receive({ type: 'pong', seq: m.seq, uptimeMs: 1, bootId, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 }),
        );
      }
    },
    sendRaw: () => {},
  });
  return {
    session,
    logger,
    sets: () => sent.filter((m): m is Extract<HostMessage, { type: 'config-set' }> => m.type === 'config-set'),
    gets: () => sent.filter((m) => m.type === 'config-get').length,
    get config() {
      return config;
    },
    reboot() {
      bootId++;
      session.receive(hello(false));
    },
  };
}

const WANTED: DeviceConfig = { watchdogMs: 1000, policy: 'sleep', hostTimeoutMs: 0, sleepMs: 3000, awakeMs: 300 };

describe('DeviceSession keeps the device configuration', () => {
  beforeEach(() => {
    clock = new ManualClock();
  });

  it('sends CONFIG_SET once for a real change, then only compares (HELLO, CONFIG_GET) after every reboot', async () => {
    const d = device({ watchdogMs: 2000, policy: 'stay', hostTimeoutMs: 0, sleepMs: 8000, awakeMs: 1000 }, ALL, WANTED);
    d.session.linkUp();
    await clock.advanceAsync(100);
    expect(d.session.state).toBe('ready');
    expect(d.sets()).toHaveLength(1);
    for (let i = 0; i < 7; i++) {
      d.reboot(); // e.g. watchdog resets during a long freeze: a boot HELLO each time
      await clock.advanceAsync(100);
    }
    expect(d.sets()).toHaveLength(1);
    expect(d.gets()).toBe(7);
    expect(d.config).toEqual(WANTED);
    d.session.close();
  });

  it('a difference only CONFIG_GET shows (sleep_ms, awake_ms) is set too, once', async () => {
    const d = device({ ...WANTED, sleepMs: 9999 }, ALL, WANTED);
    d.session.linkUp();
    await clock.advanceAsync(100);
    expect(d.gets()).toBe(1);
    expect(d.sets()).toHaveLength(1);
    expect(d.config).toEqual(WANTED);
    d.reboot();
    await clock.advanceAsync(100);
    expect(d.sets()).toHaveLength(1);
    d.session.close();
  });

  it('compares the watchdog as the device stores it (rounded down to a step)', async () => {
    const d = device(WANTED, ALL, { ...WANTED, watchdogMs: 1500 });
    d.session.linkUp();
    await clock.advanceAsync(100);
    expect(d.sets()).toHaveLength(0);
    d.session.close();
  });

  it('never sends what the HELLO says the device cannot do: policy sleep becomes stay, with one warning', async () => {
    const d = device({ ...WANTED, policy: 'stay' }, ESPRUINO_LINUX, WANTED);
    d.session.linkUp();
    await clock.advanceAsync(100);
    d.reboot();
    await clock.advanceAsync(100);
    expect(d.sets().every((m) => m.config.policy === 'stay')).toBe(true);
    expect(d.sets()).toHaveLength(0); // it already had stay and the rest
    const warnings = d.logger.records.filter((r) => r.level === 'warn' && /cannot sleep/.test(r.msg ?? ''));
    expect(warnings).toHaveLength(1);
    d.session.close();
  });

  it('a device without a watchdog gets watchdogMs 0', async () => {
    const d = device({ ...WANTED, watchdogMs: 0 }, { ...ALL, watchdog: false }, WANTED);
    d.session.linkUp();
    await clock.advanceAsync(100);
    expect(d.sets()).toHaveLength(0);
    expect(d.logger.records.some((r) => r.level === 'warn' && /no watchdog/.test(r.msg ?? ''))).toBe(true);
    d.session.close();
  });
});
