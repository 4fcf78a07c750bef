/**
 * Measures a path's idle timeout: how long a connection may carry nothing before something on
 * the way (a NAT, a firewall, a reverse proxy, a load balancer) closes it or silently forgets
 * it. Used by `tether probe`.
 *
 * A connection is opened and answered once; then it stays idle for a while and is pinged
 * again. If the path closed it while idle, the timeout is known exactly (the moment of the
 * close). If the ping goes unanswered, the path forgot the connection silently somewhere
 * between the longest idle time that survived and this one; a second round with fresh
 * connections narrows that down.
 *
 * Brokers take many connections: each idle time gets its own connection, all at once, so the
 * whole measurement takes about the timeout itself. A serial-over-TCP bridge serves one client:
 * the idle times are tried one after another on one connection.
 */

export interface ProbeConnection {
  /** Resolves with the round trip in ms; rejects when no answer comes within `timeoutMs`. */
  ping(timeoutMs: number): Promise<number>;
  /** Resolves with a reason when the connection ends by itself (closed by the peer or the path). */
  readonly closed: Promise<string>;
  close(): void;
}

export interface IdleProbeOptions {
  /** Opens a fresh connection (rejects when the target cannot be reached). */
  open(): Promise<ProbeConnection>;
  /** One connection per idle time, at once (brokers), or one after another on one (bridges). */
  parallel: boolean;
  /** Longest idle time tried (default 10 minutes). */
  maxMs?: number;
  /** How long a ping may take (default 5000 ms). */
  pingTimeoutMs?: number;
  /** Idle times tried in the first round (ms, ascending); default IDLE_STEPS_MS up to maxMs. */
  stepsMs?: number[];
  onProgress?(progress: ProbeProgress): void;
}

export type ProbeProgress =
  | { kind: 'connected'; rttMs: number }
  | { kind: 'waiting'; idleMs: number; targetMs: number; open: number }
  | { kind: 'alive'; idleMs: number; rttMs: number }
  | { kind: 'closed'; idleMs: number; reason: string }
  | { kind: 'silent'; idleMs: number }
  | { kind: 'refining'; fromMs: number; toMs: number };

export interface IdleProbeResult {
  /**
   * 'closed': the path closed an idle connection after `diedMs` (measured to the close);
   * 'silent': it forgot one without a word, after more than `survivedMs` and at most `diedMs`;
   * 'none': every idle time up to maxMs survived.
   */
  verdict: 'closed' | 'silent' | 'none';
  survivedMs: number;
  diedMs: number;
  /** What closed it, for 'closed'. */
  reason?: string;
  rttMs: number;
  /** The keepalive interval tether would use on this path (null: no limit found). */
  intervalMs: number | null;
}

/** Idle times of the first round. */
export const IDLE_STEPS_MS = [2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 360, 450, 600, 900, 1200, 1800, 2400, 3600, 7200].map((s) => s * 1000);

/**
 * The interval to keep a path awake whose idle timeout is `idleTimeoutMs`: three quarters of
 * it, in whole seconds, at least 1 s (room for the timer, the RTT and a middlebox that
 * counts from its own last packet).
 */
export function intervalBelow(idleTimeoutMs: number): number {
  return Math.max(1000, Math.floor((0.75 * idleTimeoutMs) / 1000) * 1000);
}

type Outcome = { kind: 'alive'; rttMs: number } | { kind: 'closed'; afterMs: number; reason: string } | { kind: 'silent' };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function measureIdleTimeout(options: IdleProbeOptions): Promise<IdleProbeResult> {
  const maxMs = options.maxMs ?? 600_000;
  const pingTimeoutMs = options.pingTimeoutMs ?? 5000;
  const progress = options.onProgress ?? (() => {});
  const steps = (options.stepsMs ?? IDLE_STEPS_MS).filter((ms) => ms <= maxMs);
  if (steps.at(-1) !== maxMs && (steps.at(-1) ?? 0) < maxMs) steps.push(maxMs);
  const open = new Set<ProbeConnection>();
  /** When each connection last carried traffic (its last answered ping): idle time counts from there. */
  const lastActive = new Map<ProbeConnection, number>();

  const connect = async (): Promise<{ conn: ProbeConnection; rttMs: number }> => {
    const conn = await options.open();
    open.add(conn);
    try {
      const rttMs = await conn.ping(pingTimeoutMs);
      lastActive.set(conn, Date.now());
      return { conn, rttMs };
    } catch (err) {
      conn.close();
      open.delete(conn);
      throw new Error(`connected, but no answer to a first ping within ${pingTimeoutMs} ms (${(err as Error).message})`);
    }
  };

  /** Leaves `conn` idle for `idleMs`, then pings it. */
  const idleThenPing = async (conn: ProbeConnection, idleMs: number, tick?: (ms: number) => void): Promise<Outcome> => {
    const started = lastActive.get(conn) ?? Date.now();
    let closed: { reason: string; afterMs: number } | null = null;
    void conn.closed.then((reason) => (closed ??= { reason, afterMs: Date.now() - started }));
    while (Date.now() - started < idleMs && !closed) {
      await sleep(Math.min(1000, idleMs - (Date.now() - started)));
      tick?.(Date.now() - started);
    }
    if (closed) return { kind: 'closed', ...(closed as { reason: string; afterMs: number }) };
    try {
      const rttMs = await conn.ping(pingTimeoutMs);
      lastActive.set(conn, Date.now());
      return { kind: 'alive', rttMs };
    } catch {
      const late = closed as { reason: string; afterMs: number } | null;
      // Closed while the ping was out: the close came at the end of the idle time, not during it.
      return late ? { kind: 'closed', afterMs: idleMs, reason: late.reason } : { kind: 'silent' };
    }
  };

  let survivedMs = 0;
  let diedMs = Infinity;
  let reason: string | undefined;
  let verdict = 'none' as IdleProbeResult['verdict'];
  let rttMs = 0;

  const record = (idleMs: number, outcome: Outcome) => {
    if (outcome.kind === 'alive') {
      survivedMs = Math.max(survivedMs, idleMs);
      progress({ kind: 'alive', idleMs, rttMs: outcome.rttMs });
    } else if (outcome.kind === 'closed') {
      if (outcome.afterMs < diedMs) {
        diedMs = outcome.afterMs;
        reason = outcome.reason;
        verdict = 'closed';
      }
      progress({ kind: 'closed', idleMs: outcome.afterMs, reason: outcome.reason });
    } else {
      if (idleMs < diedMs) {
        diedMs = idleMs;
        if (verdict !== 'closed') verdict = 'silent';
      }
      progress({ kind: 'silent', idleMs });
    }
  };

  try {
    const first = await connect();
    rttMs = first.rttMs;
    progress({ kind: 'connected', rttMs });
    if (options.parallel) {
      await parallelRound(steps, first.conn);
    } else {
      let conn: ProbeConnection | null = first.conn;
      for (const idleMs of steps) {
        if (!conn) conn = (await connect()).conn;
        const outcome = await idleThenPing(conn, idleMs, (ms) => progress({ kind: 'waiting', idleMs: ms, targetMs: idleMs, open: 1 }));
        record(idleMs, outcome);
        if (outcome.kind !== 'alive') break;
      }
      conn?.close();
    }
    // A silent drop is bracketed by the steps; narrow it with fresh connections.
    if (verdict === 'silent' && diedMs - survivedMs > Math.max(1000, survivedMs / 10)) {
      progress({ kind: 'refining', fromMs: survivedMs, toMs: diedMs });
      if (options.parallel) {
        const span = diedMs - survivedMs;
        const mids = [0.2, 0.4, 0.6, 0.8].map((f) => Math.round(survivedMs + f * span));
        await parallelRound(mids, null);
      } else {
        for (let round = 0; round < 2 && diedMs - survivedMs > Math.max(1000, survivedMs / 10); round++) {
          const mid = Math.round((survivedMs + diedMs) / 2);
          const { conn } = await connect();
          record(mid, await idleThenPing(conn, mid, (ms) => progress({ kind: 'waiting', idleMs: ms, targetMs: mid, open: 1 })));
          conn.close();
        }
      }
    }
  } finally {
    for (const conn of open) conn.close();
    open.clear();
  }
  const limit = verdict === 'none' ? null : verdict === 'closed' ? diedMs : survivedMs;
  return { verdict, survivedMs, diedMs, reason, rttMs, intervalMs: limit === null ? null : intervalBelow(limit || diedMs) };

  /** One connection per idle time, all at once; stops at the first death (longer ones would die too). */
  async function parallelRound(idles: number[], reuse: ProbeConnection | null): Promise<void> {
    const conns = await Promise.all(idles.map(async (_, i) => (i === 0 && reuse ? reuse : (await connect()).conn)));
    const started = Date.now();
    let done = false;
    const ticker = setInterval(() => {
      const idleMs = Date.now() - started;
      const next = idles.find((ms) => ms > idleMs) ?? idles.at(-1)!;
      progress({ kind: 'waiting', idleMs, targetMs: next, open: open.size });
    }, 1000);
    try {
      await new Promise<void>((resolve) => {
        let pending = idles.length;
        idles.forEach((idleMs, i) => {
          void idleThenPing(conns[i]!, idleMs).then((outcome) => {
            conns[i]!.close();
            open.delete(conns[i]!);
            if (done) return;
            record(idleMs, outcome);
            if (outcome.kind !== 'alive' || --pending === 0) {
              done = true;
              resolve();
            }
          });
        });
      });
    } finally {
      clearInterval(ticker);
      for (const conn of conns) {
        conn.close();
        open.delete(conn);
      }
    }
  }
}
