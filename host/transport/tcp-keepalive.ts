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
 * and the user timeout are set with setsockopt(2) through ffi-rs on Linux (directSetsockopt),
 * elsewhere through the `net-keepalive` package (loaded on first use). On Linux only what
 * differs from Node's: the interval when it is not Node's, the count only without a user
 * timeout (which ends an unanswered keepalive instead of the count).
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

/** The part of ffi-rs (net-keepalive's own FFI) used to call setsockopt(2) directly. */
type FfiRs = {
  open(params: { library: string; path: string }): void;
  load(params: Record<string, unknown>): { value: number; errnoCode: number };
  createPointer(params: { paramsType: unknown[]; paramsValue: unknown[] }): unknown[];
  restorePointer(params: { retType: unknown[]; paramsValue: unknown[] }): unknown[];
  DataType: { I32: unknown; External: unknown };
};

/** Linux <netinet/tcp.h>: what net-keepalive sets, by number. */
const SOL_TCP = 6;
const TCP_KEEPINTVL = 5;
const TCP_KEEPCNT = 6;
const TCP_USER_TIMEOUT = 18;

/**
 * setsockopt(fd, SOL_TCP, option, &int, 4) through ffi-rs, with what net-keepalive rebuilds
 * on every call made once: the library opened once, the call's parameter description reused,
 * one int in native memory per distinct value (a fleet uses the same two or three values for
 * all its sockets). net-keepalive's three calls per socket cost ~245 us (assertions, a fresh
 * native int each, never freed), these ~60 us: at 10,000 boards, with a link and an MQTT socket
 * each, ~3.7 s less work on the event loop at start (issue 15).
 */
interface Setsockopt {
  (fd: number, option: number, value: number): void;
  /** getsockopt(fd, SOL_TCP, option): what the kernel holds. */
  read(fd: number, option: number): number;
}

function directSetsockopt(ffi: FfiRs): Setsockopt {
  const library = 'tether-libc'; // path '' opens the process itself: libc's setsockopt
  ffi.open({ library, path: '' });
  const int32 = ffi.DataType.I32;
  const ints = new Map<number, unknown>();
  const intPointer = (value: number): unknown => {
    let pointer = ints.get(value);
    if (pointer === undefined) {
      pointer = ffi.createPointer({ paramsType: [int32], paramsValue: [value] })[0];
      ints.set(value, pointer);
    }
    return pointer;
  };
  const call = {
    library,
    funcName: 'setsockopt',
    retType: int32,
    paramsType: [int32, int32, int32, ffi.DataType.External, int32],
    paramsValue: [0, SOL_TCP, 0, null as unknown, 4],
    errno: true,
    freeResultMemory: false,
  };
  const set = (fd: number, option: number, value: number) => {
    const params = call.paramsValue;
    params[0] = fd;
    params[2] = option;
    params[3] = intPointer(value);
    const { value: ret, errnoCode } = ffi.load(call);
    if (ret !== 0) throw Object.assign(new Error(`setsockopt(${option}) failed: errno ${errnoCode}`), { errno: errnoCode });
  };
  const read = (fd: number, option: number): number => {
    const [value] = ffi.createPointer({ paramsType: [int32], paramsValue: [0] });
    const [length] = ffi.createPointer({ paramsType: [int32], paramsValue: [4] });
    const { value: ret, errnoCode } = ffi.load({ ...call, funcName: 'getsockopt', paramsType: [int32, int32, int32, ffi.DataType.External, ffi.DataType.External], paramsValue: [fd, SOL_TCP, option, value, length] });
    if (ret !== 0) throw Object.assign(new Error(`getsockopt(${option}) failed: errno ${errnoCode}`), { errno: errnoCode });
    return ffi.restorePointer({ retType: [int32], paramsValue: [value] })[0] as number;
  };
  return Object.assign(set, { read });
}

/**
 * The probe interval Node's own setKeepAlive() leaves on a socket, in seconds (libuv sets 1 s
 * and 10 probes along with the idle time), read back from the first socket: where it is the
 * interval wanted (the default), setting it again is a wasted call (issue 15: each costs ~16 us
 * through ffi-rs, and a fleet of 10,000 boards has 20,000 sockets). null: not read yet.
 */
let nodeIntervalS: number | null = null;

let setsockopt: Setsockopt | null | undefined;
let netKeepalive: NetKeepalive | null | undefined;
let loadError: string | null = null;

/** The direct setsockopt on Linux (numbers above), else null: net-keepalive knows the other platforms. */
function loadSetsockopt(): Setsockopt | null {
  if (setsockopt !== undefined) return setsockopt;
  setsockopt = null;
  if (process.platform !== 'linux') return null;
  try {
    setsockopt = directSetsockopt(createRequire(import.meta.url)('ffi-rs') as FfiRs);
  } catch {
    setsockopt = null; // net-keepalive then says why, or works its own way
  }
  return setsockopt;
}

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
  const direct = loadSetsockopt();
  const fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  if (direct && typeof fd === 'number' && fd >= 0) {
    try {
      const intervalS = Math.trunc(settings.keepAliveIntervalMs / 1000); // seconds, as net-keepalive rounds
      nodeIntervalS ??= direct.read(fd, TCP_KEEPINTVL);
      if (intervalS !== nodeIntervalS) direct(fd, TCP_KEEPINTVL, intervalS);
      // With a user timeout the kernel ends an unanswered keepalive by it, not by the probe
      // count (tcp(7): TCP_USER_TIMEOUT "will override keepalive"; tcp_keepalive_timer()).
      if (settings.userTimeoutMs > 0) direct(fd, TCP_USER_TIMEOUT, Math.trunc(settings.userTimeoutMs));
      else direct(fd, TCP_KEEPCNT, Math.trunc(settings.keepAliveCount));
      return { full: true };
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      logger?.debug({ err: error }, 'could not set TCP keepalive interval/count/user timeout');
      return { full: false, error };
    }
  }
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
