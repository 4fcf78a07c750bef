import type { Hello } from '../../host/session/device-session.ts';

/** A HELLO from tether's firmware (boot id 10, power-on, watchdog 2 s, policy stay), fields overridden as given. */
export function helloMessage(overrides: Partial<Hello> = {}): Hello {
  return {
    type: 'hello',
    fwMajor: 1,
    fwMinor: 0,
    bootId: 10,
    resetCauses: ['power-on'],
    stateSurvived: false,
    pinsRestored: false,
    reply: true,
    watchdogMs: 2000,
    policy: 'stay',
    hostTimeoutMs: 0,
    capabilities: { watchdog: true, sleep: true, state: true, pinRestore: true, beats: false },
    stateSize: 32,
    name: 'tether',
    ...overrides,
  };
}
