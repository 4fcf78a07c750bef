import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import type { GatewayEventBus } from '../../host/gateway/gateway-events.ts';
import type { StateChange } from '../../host/session/device-session.ts';
import { StatusModel, type StatusDeviceView, type StatusUpdate, type StatusView } from '../../host/status-page/status-model.ts';

// The status page's model on fake time and a fake gateway: what a page gets on connect, and
// which changes go out on the stream (and which do not).

const EPOCH = Date.UTC(2026, 0, 1);

function fakeDevice(id: string) {
  const link = new EventEmitter() as EventEmitter & { stats: () => ReturnType<StatusDeviceView['link']['stats']>; leases: { names(): Array<{ name: string; count: number }> } };
  const stats = {
    state: 'init',
    protocol: 'tether',
    bootId: 1 as number | null,
    rttMs: { last: null as number | null, p50: null as number | null, p99: null as number | null },
    lastSeen: null as number | null,
    reboots: { 'power-on': 0, watchdog: 0 } as Record<string, number>,
    asleepMs: 0,
    queueDepth: 0,
    lostCount: 0,
  };
  let leases: Array<{ name: string; count: number }> = [];
  link.stats = () => ({ ...stats, rttMs: { ...stats.rttMs }, reboots: { ...stats.reboots } });
  link.leases = { names: () => leases };
  const device = {
    id,
    settings: { name: `Board ${id}`, board: 'uno', port: 'tcp://127.0.0.1:2000', keepalive: { intervalMs: 1000, misses: 3 } },
    link,
    outbox: { size: 0, bytes: 0 },
    mqtt: { connected: true },
  };
  return { device, stats, setLeases: (l: typeof leases) => (leases = l) };
}

function rig() {
  const clock = new ManualClock(1000, EPOCH);
  const events = new EventEmitter() as GatewayEventBus;
  const a = fakeDevice('a');
  const mqtt = { connected: false, clientId: 'tether-gw', url: 'mqtt://gw:s3cret@node-a:1883' };
  const view: StatusView = { id: 'gw', config: { gateway: { name: 'Lab' } }, events, mqtt, devices: [a.device as unknown as StatusDeviceView] };
  const model = new StatusModel(view, { clock, heartbeatMs: 15_000, historyMs: 60_000 });
  const updates: StatusUpdate[] = [];
  model.on('update', (u) => updates.push(u));
  model.start();
  const state = (from: string, to: string, cause: string) => {
    a.stats.state = to;
    events.emit('deviceState', a.device as never, { from, to, cause, at: clock.now() } as StateChange);
  };
  return { clock, events, a, mqtt, model, updates, state };
}

describe('StatusModel', () => {
  it('shows the broker URL the gateway is connected to now (broker.urls: not the first listed), redacted', () => {
    const { clock, mqtt, model, updates } = rig();
    mqtt.connected = true;
    clock.advance(1000);
    expect(updates.filter((u) => u.type === 'gateway')).toEqual([{ type: 'gateway', brokerConnected: true, brokerUrl: 'mqtt://gw:***@node-a:1883' }]);
    // Its node died; while it tries the next ones nothing is said beyond "not connected".
    mqtt.connected = false;
    mqtt.url = 'mqtt://gw:s3cret@node-b:1883';
    clock.advance(1000);
    mqtt.url = 'mqtt://gw:s3cret@node-c:1883';
    mqtt.connected = true;
    clock.advance(1000);
    expect(updates.filter((u) => u.type === 'gateway').slice(1)).toEqual([
      { type: 'gateway', brokerConnected: false, brokerUrl: 'mqtt://gw:***@node-b:1883' },
      { type: 'gateway', brokerConnected: true, brokerUrl: 'mqtt://gw:***@node-c:1883' },
    ]);
    expect(model.snapshot().gateway.brokerUrl).toBe('mqtt://gw:***@node-c:1883');
    expect(JSON.stringify(updates)).not.toMatch(/s3cret/);
  });


  it('gives a connecting page the gateway, each board with its bound, facts and history', () => {
    const { clock, a, model, state } = rig();
    state('init', 'ready', 'handshake complete');
    a.stats.rttMs = { last: 4, p50: 4, p99: 4 };
    a.stats.lastSeen = clock.now();
    a.device.link.emit('rtt', 4.123);
    clock.advance(1000);
    const snap = model.snapshot();
    expect(snap.gateway).toEqual({ id: 'gw', name: 'Lab', startedAt: EPOCH, brokerConnected: false, brokerUrl: 'mqtt://gw:***@node-a:1883', clientId: 'tether-gw' });
    expect(snap.instance).toMatch(/^[0-9a-f]{12}$/);
    expect(snap.heartbeatMs).toBe(15_000);
    expect(snap.devices).toHaveLength(1);
    const d = snap.devices[0]!;
    expect(d).toMatchObject({ id: 'a', name: 'Board a', board: 'uno', boundMs: 3000, rtt: [[EPOCH, 4.12]], rttStats: { last: 4, p50: 4, p99: 4 }, lastSeen: EPOCH });
    expect(d.facts).toMatchObject({ state: 'ready', since: EPOCH, cause: 'handshake complete', reboots: { 'power-on': 0, watchdog: 0 }, leases: [], outbox: { size: 0, bytes: 0 }, brokerConnected: true });
    expect(d.changes).toEqual([{ at: EPOCH, from: 'init', to: 'ready', cause: 'handshake complete' }]);
  });

  it('sends state changes and reboots at once, RTT samples once per tick, facts only when they change', () => {
    const { clock, a, events, mqtt, updates, state } = rig();
    state('init', 'ready', 'handshake complete');
    expect(updates.map((u) => u.type)).toEqual(['state']); // at once, not at the next tick

    for (let i = 0; i < 3; i++) {
      a.device.link.emit('rtt', 5 + i);
      clock.advance(300);
    }
    clock.advance(100); // the tick at 1000 ms
    const rtt = updates.filter((u) => u.type === 'rtt');
    expect(rtt).toHaveLength(1);
    expect(rtt[0]).toMatchObject({ device: 'a', samples: [[EPOCH, 5], [EPOCH + 300, 6], [EPOCH + 600, 7]] });

    updates.length = 0;
    clock.advance(5000); // nothing changed: nothing sent
    expect(updates).toEqual([]);

    a.setLeases([{ name: 'dashboard', count: 1 }]);
    a.device.outbox.size = 3;
    a.device.outbox.bytes = 120;
    mqtt.connected = true;
    clock.advance(1000);
    expect(updates).toEqual([
      { type: 'facts', device: 'a', facts: expect.objectContaining({ leases: [{ name: 'dashboard', count: 1 }], outbox: { size: 3, bytes: 120 } }) },
      { type: 'gateway', brokerConnected: true, brokerUrl: 'mqtt://gw:***@node-a:1883' },
    ]);

    updates.length = 0;
    a.stats.reboots.watchdog = 1;
    events.emit('deviceReboot', a.device as never, { bootId: 2, previousBootId: 1, causes: ['watchdog'], stateSurvived: true });
    expect(updates).toEqual([
      { type: 'reboot', device: 'a', reboot: { at: clock.wallNow(), causes: ['watchdog'], stateSurvived: true }, facts: expect.objectContaining({ reboots: { 'power-on': 0, watchdog: 1 } }) },
    ]);
    clock.advance(1000); // the reboot's facts went with it: no second message
    expect(updates).toHaveLength(1);
  });

  it('tells the stream when a board was heard without a round trip (its BEATs), once per tick, and nothing while it is silent', () => {
    const { clock, a, updates, state } = rig();
    state('init', 'ready', 'handshake complete');
    updates.length = 0;
    const heardAt = clock.now() + 500;
    clock.advance(500);
    a.stats.lastSeen = heardAt; // a BEAT: contact, no RTT sample
    clock.advance(500); // the tick
    expect(updates).toEqual([{ type: 'seen', device: 'a', lastSeen: EPOCH + (heardAt - 1000) }]);
    updates.length = 0;
    clock.advance(3000); // silent: lastSeen unchanged, nothing sent
    expect(updates).toEqual([]);
    a.device.link.emit('rtt', 4); // a renewal's PONG: the RTT update carries lastSeen, no 'seen' besides
    a.stats.lastSeen = clock.now();
    clock.advance(1000);
    expect(updates.map((u) => u.type)).toEqual(['rtt']);
  });

  it('keeps the RTT history to its window and the logs to their size', () => {
    const { clock, a, model, state } = rig();
    for (let i = 0; i < 120; i++) {
      a.device.link.emit('rtt', 3);
      clock.advance(1000);
    }
    const rtt = model.snapshot().devices[0]!.rtt;
    expect(rtt.length).toBeGreaterThanOrEqual(59);
    expect(rtt.length).toBeLessThanOrEqual(61);
    expect(rtt[0]![0]).toBeGreaterThanOrEqual(clock.wallNow() - 60_000);
    for (let i = 0; i < 60; i++) state(i % 2 ? 'lost' : 'ready', i % 2 ? 'ready' : 'lost', `change ${i}`);
    const changes = model.snapshot().devices[0]!.changes;
    expect(changes).toHaveLength(50);
    expect(changes.at(-1)!.cause).toBe('change 59');
  });

  it('stop() removes every listener and timer it added', () => {
    const { clock, a, events, model } = rig();
    expect(events.listenerCount('deviceState')).toBe(1);
    expect(a.device.link.listenerCount('rtt')).toBe(1);
    expect(clock.pending).toBe(1);
    model.stop();
    expect(events.listenerCount('deviceState')).toBe(0);
    expect(events.listenerCount('deviceReboot')).toBe(0);
    expect(a.device.link.listenerCount('rtt')).toBe(0);
    expect(clock.pending).toBe(0);
  });
});
