import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { GatewayEventBus } from '../gateway/gateway-events.ts';
import type { DeviceLinkStats } from '../link/device-link.ts';
import { redactUrl } from '../log/redact.ts';
import type { RebootInfo, StateChange } from '../session/device-session.ts';
import { every, type Clock, type WallClock } from '../time/clock.ts';

/**
 * What the status page shows, kept by the daemon: each board's current facts, its recent
 * history (heartbeat RTTs, state changes with their causes, reboots), and the broker link.
 * A page that (re)connects gets all of it at once (snapshot()); after that, changes arrive
 * as small events ('update'), so a page never has to poll.
 *
 * Pure apart from the clock: it reads the gateway through StatusView (structural, so tests
 * pass fakes) and listens to the gateway's events.
 */

/** The parts of a Gateway the model reads. */
export interface StatusView {
  readonly id: string;
  readonly config: { readonly gateway: { readonly name: string } };
  readonly events: GatewayEventBus;
  /** `url`: the broker URL in use (with `broker.urls`, the one connected to, or tried next). */
  readonly mqtt: { readonly connected: boolean; readonly clientId: string; readonly url: string };
  readonly devices: ReadonlyArray<StatusDeviceView>;
}

export interface StatusDeviceView {
  readonly id: string;
  readonly settings: { readonly name?: string; readonly board: string; readonly port: string; readonly keepalive: { readonly intervalMs: number; readonly misses: number } };
  readonly link: {
    stats(): Pick<DeviceLinkStats, 'state' | 'protocol' | 'bootId' | 'rttMs' | 'lastSeen' | 'reboots' | 'asleepMs' | 'queueDepth' | 'lostCount'>;
    readonly leases: { names(): Array<{ name: string; count: number }> };
    on(event: 'rtt', listener: (ms: number) => void): unknown;
    off(event: 'rtt', listener: (ms: number) => void): unknown;
  };
  readonly outbox: { readonly size: number; readonly bytes: number };
  readonly mqtt: { readonly connected: boolean };
}

/** Facts of a board that change now and then; sent when any of them changes. */
export interface DeviceFacts {
  state: string;
  /** Wall time (ms since the epoch) of the last state change this daemon saw, with its cause. */
  since: number | null;
  cause: string | null;
  protocol: string;
  bootId: number | null;
  reboots: Record<string, number>;
  lostCount: number;
  asleepMs: number;
  leases: Array<{ name: string; count: number }>;
  outbox: { size: number; bytes: number };
  writeQueue: number;
  brokerConnected: boolean;
}

export interface DeviceStatus {
  id: string;
  name: string;
  board: string;
  port: string;
  /** The liveness bound: lost no later than this long after the last PONG (interval x misses). */
  boundMs: number;
  facts: DeviceFacts;
  /** Heartbeat round trips, oldest first: [wall ms, rtt ms]. */
  rtt: Array<[number, number]>;
  rttStats: { last: number | null; p50: number | null; p99: number | null };
  /** Wall time of the last message from the board (null: never). */
  lastSeen: number | null;
  changes: Array<{ at: number; from: string; to: string; cause: string }>;
  rebootLog: Array<{ at: number; causes: string[]; stateSurvived: boolean }>;
}

export interface StatusSnapshot {
  /** Changes for every daemon start: a page tells a restarted daemon from a reconnect by it. */
  instance: string;
  /** brokerUrl: the gateway session's broker URL in use, credentials redacted. */
  gateway: { id: string; name: string; startedAt: number; brokerConnected: boolean; brokerUrl: string; clientId: string };
  /** How long the RTT history reaches back (ms). */
  historyMs: number;
  /** The stream's heartbeat period (ms). */
  heartbeatMs: number;
  now: number;
  devices: DeviceStatus[];
}

/** A change, as sent on the stream after the snapshot. */
export type StatusUpdate =
  | { type: 'state'; device: string; change: { at: number; from: string; to: string; cause: string }; facts: DeviceFacts }
  | { type: 'reboot'; device: string; reboot: { at: number; causes: string[]; stateSurvived: boolean }; facts: DeviceFacts }
  | { type: 'facts'; device: string; facts: DeviceFacts }
  | { type: 'rtt'; device: string; samples: Array<[number, number]>; stats: DeviceStatus['rttStats']; lastSeen: number | null }
  /** Heard from since the last tick without a round trip (a board that sends BEATs: its RTT comes with each renewal only). */
  | { type: 'seen'; device: string; lastSeen: number | null }
  | { type: 'gateway'; brokerConnected: boolean; brokerUrl: string };

export interface StatusModelOptions {
  clock: Clock & WallClock;
  /** RTT history kept per board (default 10 minutes). */
  historyMs?: number;
  /** How often facts are compared and RTT samples sent (default 1000 ms). */
  tickMs?: number;
  /** State changes and reboots kept per board (default 50). */
  logSize?: number;
  heartbeatMs: number;
}

interface DeviceRecord {
  view: StatusDeviceView;
  rtt: Array<[number, number]>;
  pending: Array<[number, number]>;
  changes: DeviceStatus['changes'];
  rebootLog: DeviceStatus['rebootLog'];
  since: number | null;
  cause: string | null;
  factsJson: string;
  offRtt: () => void;
  /** The lastSeen (Clock ms) the stream was last told. */
  seenSent: number | null;
}

export class StatusModel extends EventEmitter<{ update: [StatusUpdate] }> {
  readonly instance = randomBytes(6).toString('hex');
  readonly startedAt: number;
  private readonly clock: Clock & WallClock;
  private readonly historyMs: number;
  private readonly tickMs: number;
  private readonly logSize: number;
  private readonly heartbeatMs: number;
  private readonly records = new Map<string, DeviceRecord>();
  private brokerConnected = false;
  private brokerUrl = '';
  private stopTicks: (() => void) | null = null;
  private readonly offs: Array<() => void> = [];

  constructor(
    private readonly view: StatusView,
    options: StatusModelOptions,
  ) {
    super();
    this.clock = options.clock;
    this.historyMs = options.historyMs ?? 10 * 60_000;
    this.tickMs = options.tickMs ?? 1000;
    this.logSize = options.logSize ?? 50;
    this.heartbeatMs = options.heartbeatMs;
    this.startedAt = this.clock.wallNow();
  }

  /** Listens to the gateway and starts comparing facts every tick. */
  start(): void {
    if (this.stopTicks) return;
    for (const view of this.view.devices) {
      const record: DeviceRecord = { view, rtt: [], pending: [], changes: [], rebootLog: [], since: null, cause: null, factsJson: '', offRtt: () => {}, seenSent: null };
      const onRtt = (ms: number) => record.pending.push([this.clock.wallNow(), round(ms)]);
      view.link.on('rtt', onRtt);
      record.offRtt = () => view.link.off('rtt', onRtt);
      record.factsJson = JSON.stringify(this.facts(record));
      this.records.set(view.id, record);
    }
    const onState = (device: { id: string }, change: StateChange) => this.onState(device.id, change);
    const onReboot = (device: { id: string }, info: RebootInfo) => this.onReboot(device.id, info);
    this.view.events.on('deviceState', onState);
    this.view.events.on('deviceReboot', onReboot);
    this.offs.push(() => {
      this.view.events.off('deviceState', onState);
      this.view.events.off('deviceReboot', onReboot);
    });
    this.stopTicks = every(this.clock, this.tickMs, () => this.tick());
  }

  stop(): void {
    this.stopTicks?.();
    this.stopTicks = null;
    for (const off of this.offs.splice(0)) off();
    for (const r of this.records.values()) r.offRtt();
    this.removeAllListeners();
  }

  /** Everything a page needs to draw itself, as of now. */
  snapshot(): StatusSnapshot {
    const horizon = this.clock.wallNow() - this.historyMs;
    return {
      instance: this.instance,
      gateway: { id: this.view.id, name: this.view.config.gateway.name, startedAt: this.startedAt, brokerConnected: this.gatewayConnected(), brokerUrl: redactUrl(this.view.mqtt.url), clientId: this.view.mqtt.clientId },
      historyMs: this.historyMs,
      heartbeatMs: this.heartbeatMs,
      now: this.clock.wallNow(),
      devices: [...this.records.values()].map((r) => {
        const s = r.view.link.stats();
        const k = r.view.settings.keepalive;
        return {
          id: r.view.id,
          name: r.view.settings.name ?? r.view.id,
          board: r.view.settings.board,
          port: r.view.settings.port,
          boundMs: k.intervalMs * k.misses,
          facts: this.facts(r),
          // Samples not yet sent also go out at the next tick: a page skips those it has.
          rtt: [...r.rtt, ...r.pending].filter(([t]) => t >= horizon),
          rttStats: roundStats(s.rttMs),
          lastSeen: this.wallOf(s.lastSeen),
          changes: [...r.changes],
          rebootLog: [...r.rebootLog],
        };
      }),
    };
  }

  /** Compares facts, sends RTT samples gathered since the last tick. Public for tests. */
  tick(): void {
    this.flushRtt();
    for (const [id, r] of this.records) this.emitFactsIfChanged(id, r);
    const connected = this.gatewayConnected();
    const url = redactUrl(this.view.mqtt.url);
    if (connected !== this.brokerConnected || (connected && url !== this.brokerUrl)) {
      this.brokerConnected = connected;
      this.brokerUrl = url;
      this.emit('update', { type: 'gateway', brokerConnected: connected, brokerUrl: url });
    }
  }

  private onState(id: string, change: StateChange): void {
    const r = this.records.get(id);
    if (!r) return;
    const at = this.clock.wallNow();
    const entry = { at, from: change.from, to: change.to, cause: change.cause };
    push(r.changes, entry, this.logSize);
    r.since = at;
    r.cause = change.cause;
    const facts = this.facts(r);
    r.factsJson = JSON.stringify(facts);
    this.emit('update', { type: 'state', device: id, change: entry, facts });
  }

  private onReboot(id: string, info: RebootInfo): void {
    const r = this.records.get(id);
    if (!r) return;
    const entry = { at: this.clock.wallNow(), causes: [...info.causes], stateSurvived: info.stateSurvived };
    push(r.rebootLog, entry, this.logSize);
    const facts = this.facts(r);
    r.factsJson = JSON.stringify(facts);
    this.emit('update', { type: 'reboot', device: id, reboot: entry, facts });
  }

  private emitFactsIfChanged(id: string, r: DeviceRecord): void {
    const facts = this.facts(r);
    const json = JSON.stringify(facts);
    if (json === r.factsJson) return;
    r.factsJson = json;
    this.emit('update', { type: 'facts', device: id, facts });
  }

  /**
   * Moves the RTT samples gathered since the last tick into the history and onto the stream;
   * drops old ones. A board heard from without a round trip (its BEATs) gets its last seen.
   */
  private flushRtt(): void {
    const horizon = this.clock.wallNow() - this.historyMs;
    for (const [id, r] of this.records) {
      const samples = r.pending.splice(0);
      r.rtt.push(...samples);
      let drop = 0;
      while (drop < r.rtt.length && r.rtt[drop]![0] < horizon) drop++;
      if (drop > 0) r.rtt.splice(0, drop);
      const s = r.view.link.stats();
      if (samples.length > 0) {
        this.emit('update', { type: 'rtt', device: id, samples, stats: roundStats(s.rttMs), lastSeen: this.wallOf(s.lastSeen) });
      } else if (s.lastSeen !== r.seenSent) {
        this.emit('update', { type: 'seen', device: id, lastSeen: this.wallOf(s.lastSeen) });
      }
      r.seenSent = s.lastSeen;
    }
  }

  private facts(r: DeviceRecord): DeviceFacts {
    const s = r.view.link.stats();
    return {
      state: s.state,
      since: r.since,
      cause: r.cause,
      protocol: s.protocol,
      bootId: s.bootId,
      reboots: s.reboots,
      lostCount: s.lostCount,
      asleepMs: Math.round(s.asleepMs),
      leases: r.view.link.leases.names(),
      outbox: { size: r.view.outbox.size, bytes: r.view.outbox.bytes },
      writeQueue: s.queueDepth,
      brokerConnected: r.view.mqtt.connected,
    };
  }

  private gatewayConnected(): boolean {
    return this.view.mqtt.connected;
  }

  /** A monotonic clock reading as wall time. */
  private wallOf(monotonic: number | null): number | null {
    if (monotonic === null) return null;
    return Math.round(this.clock.wallNow() - (this.clock.now() - monotonic));
  }
}

function push<T>(list: T[], entry: T, max: number): void {
  list.push(entry);
  if (list.length > max) list.splice(0, list.length - max);
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

function roundStats(s: { last: number | null; p50: number | null; p99: number | null }): DeviceStatus['rttStats'] {
  const r = (v: number | null) => (v === null ? null : round(v));
  return { last: r(s.last), p50: r(s.p50), p99: r(s.p99) };
}
