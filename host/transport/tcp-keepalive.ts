import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { Logger } from '../log/logger.ts';

/**
 * Kernel-level liveness for one TCP socket (a serial-over-TCP bridge or a broker connection).
 *
 * - TCP keepalive: after `keepAliveIdleMs` without data the kernel sends an empty probe every
 *   `keepAliveIntervalMs`; `keepAliveCount` unanswered probes close the socket. A probe
 *   refreshes a kernel NAT's or firewall's connection-tracking entry; it does NOT count as
 *   traffic for load balancers that only look at payload (AWS documents this).
 * - TCP_USER_TIMEOUT: sent data (or a keepalive probe) left unacknowledged this long closes
 *   the socket with ETIMEDOUT, instead of Linux's ~15 minutes of retransmissions
 *   (tcp_retries2), so a blackholed connection is let go at the same bound the session uses.
 *
 * Node itself sets only the idle time (libuv adds 1 s x 10 probes); the interval, the count
 * and the user timeout come from the `net-keepalive` package (loaded on first use).
 */
export interface TcpKeepaliveSettings {
  /** Idle time before the first probe (ms, at least 1000: the kernel counts whole seconds). */
  keepAliveIdleMs: number;
  /** Between probes (ms, at least 1000). */
  keepAliveIntervalMs: number;
  /** Unanswered probes before the kernel closes the socket. */
  keepAliveCount: number;
  /** Unacknowledged data this long closes the socket; 0 leaves the kernel default (~15 min). */
  userTimeoutMs: number;
}

/** What a user may set in the config (each field overrides the one derived from the bound). */
export type TcpKeepaliveConfig = Partial<TcpKeepaliveSettings>;

const MIN_PROBE_MS = 1000;
/** Linux limits: TCP_KEEPIDLE and TCP_KEEPINTVL at most 32767 s, TCP_KEEPCNT at most 127. */
const MAX_PROBE_MS = 32_767_000;
const MAX_COUNT = 127;

/**
 * Settings from a connection's liveness bound: the session declares the peer gone at
 * `boundMs` after the last answer, so the kernel should give the socket up at the same
 * bound, not 15 minutes later. `intervalMs` is how often the session itself sends traffic:
 * probes start after half of it (at least 1 s) of silence, so a kernel NAT sees traffic
 * at least twice per interval even while the session is quiet.
 */
export function tcpKeepaliveForBound(boundMs: number, intervalMs: number, overrides: TcpKeepaliveConfig = {}): TcpKeepaliveSettings {
  const idle = clamp(Math.round(intervalMs / 2), MIN_PROBE_MS, MAX_PROBE_MS);
  const userTimeoutMs = Math.max(MIN_PROBE_MS, Math.round(boundMs));
  const settings: TcpKeepaliveSettings = {
    keepAliveIdleMs: idle,
    keepAliveIntervalMs: MIN_PROBE_MS,
    // Probes every second until the bound: the count only matters without a user timeout.
    keepAliveCount: clamp(Math.ceil(userTimeoutMs / MIN_PROBE_MS), 1, MAX_COUNT),
    userTimeoutMs,
  };
  return { ...settings, ...definedOnly(overrides) };
}

type NetKeepalive = {
  setKeepAliveInterval(socket: Socket, ms: number): boolean;
  setKeepAliveProbes(socket: Socket, count: number): boolean;
  setUserTimeout(socket: Socket, ms: number): boolean;
};

let netKeepalive: NetKeepalive | null | undefined;
let loadError: string | null = null;

function loadNetKeepalive(): NetKeepalive | null {
  if (netKeepalive !== undefined) return netKeepalive;
  try {
    netKeepalive = createRequire(import.meta.url)('net-keepalive') as NetKeepalive;
  } catch (err) {
    netKeepalive = null;
    loadError = err instanceof Error ? err.message : String(err);
  }
  return netKeepalive;
}

export interface AppliedTcpKeepalive {
  /** The interval, count and user timeout were set (false: only Node's own idle time). */
  full: boolean;
  /** Why they were not, when not. */
  error?: string;
}

/**
 * Sets keepalive and the user timeout on a connected socket (for a TLS socket, its TCP
 * socket). Never throws: a platform without these options keeps Node's keepalive and the
 * reason is logged once at debug level.
 */
export function applyTcpKeepalive(socket: Socket, settings: TcpKeepaliveSettings, logger?: Logger): AppliedTcpKeepalive {
  socket.setKeepAlive(true, settings.keepAliveIdleMs);
  const nk = loadNetKeepalive();
  if (!nk) {
    logger?.debug({ err: loadError }, 'net-keepalive unavailable: TCP keepalive idle time only, no TCP_USER_TIMEOUT');
    return { full: false, error: loadError ?? 'net-keepalive unavailable' };
  }
  try {
    nk.setKeepAliveInterval(socket, settings.keepAliveIntervalMs);
    nk.setKeepAliveProbes(socket, settings.keepAliveCount);
    if (settings.userTimeoutMs > 0) nk.setUserTimeout(socket, settings.userTimeoutMs);
    return { full: true };
  } catch (err) {
    // A socket closed in between has no fd any more; anything else is a platform limit.
    const error = err instanceof Error ? err.message : String(err);
    logger?.debug({ err: error }, 'could not set TCP keepalive interval/count/user timeout');
    return { full: false, error };
  }
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
