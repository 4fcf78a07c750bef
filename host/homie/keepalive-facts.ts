import type { DeviceLink, DeviceLinkStats } from '../link/device-link.ts';
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
  /**
   * Nor is one that did not last this long (default 30 000 ms): the RTT goes out once every look
   * for this long found it beyond both bounds, on the same side. The median the daemon measures
   * follows its own event loop's load, which rises for tens of seconds while a fleet starts and
   * after every burst, and then falls back: without this every board republished its RTT on the
   * way up and again on the way down. 0: at the first look beyond the bounds.
   */
  rttSettleMs?: number;
}

export type KeepaliveFactStats = Pick<DeviceLinkStats, 'rttMs' | 'lastSeen' | 'bootId' | 'reboots' | 'asleepMs'> & Partial<Pick<DeviceLinkStats, 'keepTraffic'>>;
type Stats = KeepaliveFactStats;

/** keepaliveStats()'s one object: due() reads it and keeps nothing of it. */
const scratch: { rttMs: { last: number | null; p50: number | null; p99: null } } & Omit<KeepaliveFactStats, 'rttMs'> = {
  rttMs: { last: null, p50: null, p99: null },
  lastSeen: null,
  bootId: null,
  reboots: {},
  asleepMs: 0,
  keepTraffic: null,
};

/** keepaliveStats()'s path object (the bridge keep-traffic's stats), reused as `scratch` is. */
const pathScratch: NonNullable<KeepaliveFactStats['keepTraffic']> = { intervalMs: 0, timeoutMs: null, learned: false, drops: { closed: 0, 'half-open': 0 } };

/**
 * What due() needs of `link`, read from its session: the whole of link.stats() (a new object
 * of fifteen fields, a copy of the reboot counts, the 99th percentile) for every board every
 * few seconds was most of what the facts check allocated. The object returned is reused by the
 * next call: hand it to due() at once.
 */
export function keepaliveStats(link: Pick<DeviceLink, 'session' | 'keepTraffic'>): KeepaliveFactStats {
  const { session } = link;
  const { rtt, counters } = session;
  const any = rtt.count > 0;
  scratch.rttMs.last = any ? rtt.last : null;
  scratch.rttMs.p50 = any ? rtt.p50 : null;
  scratch.lastSeen = session.lastSeen;
  scratch.bootId = session.bootId;
  scratch.reboots = counters.reboots;
  scratch.asleepMs = counters.asleepMs;
  const path = link.keepTraffic;
  if (path) {
    // The keep-traffic's stats field by field: its `stats` makes two objects.
    pathScratch.intervalMs = path.intervalMs;
    pathScratch.timeoutMs = path.timeoutMs;
    pathScratch.learned = path.learned;
    pathScratch.drops = path.dropCounts;
    scratch.keepTraffic = pathScratch;
  } else {
    scratch.keepTraffic = null;
  }
  return scratch;
}

/** What due() returns when nothing is news (most looks): one frozen array, nothing allocated. */
const NOTHING: readonly KeepaliveFact[] = Object.freeze([]);

/** The facts published when they change, in the order they go out. */
const COUNTERS = ['boot-id', 'reboots', 'asleep-time', 'reset-cause', 'keep-interval', 'idle-timeout', 'drops-closed', 'drops-half-open'] as const;
const BOOT_ID = 0;
const REBOOTS = 1;
const ASLEEP = 2;
const RESET_CAUSE = 3;
const KEEP_INTERVAL = 4;
const IDLE_TIMEOUT = 5;
const DROPS_CLOSED = 6;
const DROPS_HALF_OPEN = 7;

/**
 * Which keepalive facts of a board (the Homie `tether` node) are worth a message now: an idle
 * board must cost close to nothing on the broker link. Counters (boot id, reboots, time asleep,
 * reset cause) go out when they change; the RTT (its median, not the last sample) when it moved
 * by more than `rttChange` and `rttMinChangeMs` and stayed there for `rttSettleMs`, else with
 * the slow refresh; last-seen on state changes and with the refresh. Pure: the caller supplies
 * the stats and publishes what comes back. A look that finds nothing new allocates nothing.
 */
export class KeepaliveFacts {
  private readonly refreshMs: number;
  private readonly rttChange: number;
  private readonly rttMinChangeMs: number;
  private readonly rttSettleMs: number;
  /** The RTT last published (as rounded in its message) and when; null: none yet. */
  private rtt: number | null = null;
  private rttAt = 0;
  /** Since when every look found the RTT beyond the bounds, on the side `rttSide` (null: it is within them). */
  private rttOutSince: number | null = null;
  private rttSide = 0;
  private lastSeenAt: number | null = null;
  /** The counters' published values, by COUNTERS index (numbers compared as numbers, stringified only to publish). */
  private readonly counters: Array<number | string | undefined> = new Array(COUNTERS.length).fill(undefined);

  constructor(private readonly options: KeepaliveFactsOptions) {
    this.refreshMs = options.refreshMs ?? 300_000;
    this.rttChange = options.rttChange ?? 0.5;
    this.rttMinChangeMs = options.rttMinChangeMs ?? 10;
    this.rttSettleMs = options.rttSettleMs ?? 30_000;
  }

  /**
   * The facts to publish for `stats`. `stateChanged`: the board's state just changed (then
   * last-seen and the RTT go out as they are). `reboot`: it just rebooted.
   */
  due(stats: Stats, event: { stateChanged?: boolean; reboot?: RebootInfo } = {}): readonly KeepaliveFact[] {
    const now = this.options.clock.now();
    let out: KeepaliveFact[] | null = null;
    const rtt = stats.rttMs.p50 ?? stats.rttMs.last;
    if (rtt !== null && (event.stateChanged || this.rttNews(rtt, now))) {
      const value = rtt.toFixed(1);
      this.rtt = Number(value);
      this.rttAt = now;
      this.rttOutSince = null;
      out = add(out, 'rtt', value, 'telemetry');
    }
    if (stats.lastSeen !== null && (event.stateChanged || this.lastSeenAt === null || now - this.lastSeenAt >= this.refreshMs)) {
      this.lastSeenAt = now;
      const { clock } = this.options;
      out = add(out, 'last-seen', new Date(clock.wallNow() - (clock.now() - stats.lastSeen)).toISOString(), 'telemetry');
    }
    out = this.changed(out, BOOT_ID, stats.bootId);
    let reboots = 0;
    for (const cause in stats.reboots) reboots += stats.reboots[cause]!;
    out = this.changed(out, REBOOTS, reboots);
    out = this.changed(out, ASLEEP, Math.round(stats.asleepMs / 1000));
    if (event.reboot) out = this.changed(out, RESET_CAUSE, event.reboot.causes[0] ?? 'unknown');
    const path = stats.keepTraffic;
    if (path) {
      // A tcp:// bridge's path: these change only when a cut is seen or the search moves.
      out = this.changed(out, KEEP_INTERVAL, (path.intervalMs / 1000).toFixed(1));
      out = this.changed(out, IDLE_TIMEOUT, ((path.timeoutMs ?? 0) / 1000).toFixed(1));
      out = this.changed(out, DROPS_CLOSED, path.drops.closed);
      out = this.changed(out, DROPS_HALF_OPEN, path.drops['half-open']);
    }
    return out ?? NOTHING;
  }

  /** Forget what was published (after a broker reconnect that may have lost retained values). */
  reset(): void {
    this.rtt = null;
    this.rttOutSince = null;
    this.lastSeenAt = null;
    this.counters.fill(undefined);
  }

  /** Adds the counter `index` to `out` if `value` differs from the one published. */
  private changed(out: KeepaliveFact[] | null, index: number, value: number | string | null): KeepaliveFact[] | null {
    if (value === null || this.counters[index] === value) return out;
    this.counters[index] = value;
    return add(out, COUNTERS[index]!, typeof value === 'number' ? String(value) : value, 'state');
  }

  /** Whether the RTT `rtt` measured now is news: none published yet, due for the refresh, or moved for long enough. */
  private rttNews(rtt: number, now: number): boolean {
    const published = this.rtt;
    if (published === null || now - this.rttAt >= this.refreshMs) return true;
    const side = Math.abs(rtt - published) > Math.max(this.rttChange * published, this.rttMinChangeMs) ? Math.sign(rtt - published) : 0;
    if (side === 0) {
      this.rttOutSince = null;
      return false;
    }
    if (this.rttOutSince === null || side !== this.rttSide) {
      this.rttOutSince = now;
      this.rttSide = side;
    }
    return now - this.rttOutSince >= this.rttSettleMs;
  }
}

function add(out: KeepaliveFact[] | null, property: string, value: string, kind: OutboxKind): KeepaliveFact[] {
  (out ??= []).push({ property, value, kind });
  return out;
}
