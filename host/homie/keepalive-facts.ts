import type { DeviceLinkStats } from '../link/device-link.ts';
import type { OutboxKind } from '../mqtt/durable-outbox.ts';
import type { RebootInfo } from '../session/device-session.ts';
import type { Clock, WallClock } from '../time/clock.ts';

export interface KeepaliveFact {
  property: string;
  value: string;
  kind: OutboxKind;
}

export interface KeepaliveFactsOptions {
  clock: Clock & WallClock;
  /** RTT and last-seen are published again at least this often while they drift (default 300 s). */
  refreshMs?: number;
  /** An RTT change smaller than this fraction of the last published one is not news (default 0.5). */
  rttChange?: number;
  /**
   * Nor is one smaller than this (default 10 ms): on a fast link a median that wanders between
   * 1 and 4 ms moves by "more than half" all the time, and a fleet would publish it every check.
   */
  rttMinChangeMs?: number;
}

type Stats = Pick<DeviceLinkStats, 'rttMs' | 'lastSeen' | 'bootId' | 'reboots' | 'asleepMs'> & Partial<Pick<DeviceLinkStats, 'keepTraffic'>>;

/**
 * Which keepalive facts of a board (the Homie `tether` node) are worth a message now: an idle
 * board must cost close to nothing on the broker link. Counters (boot id, reboots, time asleep,
 * reset cause) go out when they change; the RTT (its median, not the last sample) when it moved
 * by more than `rttChange` and `rttMinChangeMs`, else with the slow refresh; last-seen on state changes and with the
 * refresh. Pure: the caller supplies the stats and publishes what comes back.
 */
export class KeepaliveFacts {
  private readonly last = new Map<string, { value: string; at: number }>();
  private readonly refreshMs: number;
  private readonly rttChange: number;
  private readonly rttMinChangeMs: number;

  constructor(private readonly options: KeepaliveFactsOptions) {
    this.refreshMs = options.refreshMs ?? 300_000;
    this.rttChange = options.rttChange ?? 0.5;
    this.rttMinChangeMs = options.rttMinChangeMs ?? 10;
  }

  /**
   * The facts to publish for `stats`. `stateChanged`: the board's state just changed (then
   * last-seen and the RTT go out as they are). `reboot`: it just rebooted.
   */
  due(stats: Stats, event: { stateChanged?: boolean; reboot?: RebootInfo } = {}): KeepaliveFact[] {
    const now = this.options.clock.now();
    const out: KeepaliveFact[] = [];
    const stale = (property: string) => {
      const prev = this.last.get(property);
      return prev === undefined || now - prev.at >= this.refreshMs;
    };
    const put = (property: string, value: string, kind: OutboxKind) => {
      this.last.set(property, { value, at: now });
      out.push({ property, value, kind });
    };
    const onChange = (property: string, value: string | null, kind: OutboxKind = 'state') => {
      if (value !== null && this.last.get(property)?.value !== value) put(property, value, kind);
    };

    const rtt = stats.rttMs.p50 ?? stats.rttMs.last;
    if (rtt !== null) {
      const value = rtt.toFixed(1);
      const prev = this.last.get('rtt');
      const moved = prev === undefined || Math.abs(rtt - Number(prev.value)) > Math.max(this.rttChange * Number(prev.value), this.rttMinChangeMs);
      if (moved || event.stateChanged || stale('rtt')) put('rtt', value, 'telemetry');
    }
    if (stats.lastSeen !== null && (event.stateChanged || stale('last-seen'))) {
      const { clock } = this.options;
      put('last-seen', new Date(clock.wallNow() - (clock.now() - stats.lastSeen)).toISOString(), 'telemetry');
    }
    onChange('boot-id', stats.bootId === null ? null : String(stats.bootId));
    onChange('reboots', String(Object.values(stats.reboots).reduce((a, b) => a + b, 0)));
    onChange('asleep-time', String(Math.round(stats.asleepMs / 1000)));
    if (event.reboot) onChange('reset-cause', event.reboot.causes[0] ?? 'unknown');
    const path = stats.keepTraffic;
    if (path) {
      // A tcp:// bridge's path: these change only when a cut is seen or the search moves.
      onChange('keep-interval', (path.intervalMs / 1000).toFixed(1));
      onChange('idle-timeout', ((path.timeoutMs ?? 0) / 1000).toFixed(1));
      onChange('drops-closed', String(path.drops.closed));
      onChange('drops-half-open', String(path.drops['half-open']));
    }
    return out;
  }

  /** Forget what was published (after a broker reconnect that may have lost retained values). */
  reset(): void {
    this.last.clear();
  }
}
