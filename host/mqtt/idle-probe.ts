import mqtt from 'mqtt';
import type { IClientOptions, Timer } from 'mqtt';
import type { Clock, TimerHandle } from '../time/clock.ts';
import type { ProbeVerdict } from './idle-timeout-learner.ts';

export type IdleProbeResult = ProbeVerdict | { outcome: 'failed'; reason: string };

export interface IdleProbeOptions {
  url: string;
  /** Its own client id (never a live session's: that would take the session over). */
  clientId: string;
  protocolVersion: 5 | 4;
  /** Sent in CONNECT, so the broker does not drop the probe while it idles (idleMs stays under it). */
  keepaliveSec: number;
  /** How long to stay silent after CONNACK before the PINGREQ. */
  idleMs: number;
  /** The longest wait for the PINGRESP (the sessions' pingRespTimeoutMs). */
  pingRespTimeoutMs: number;
  connectTimeoutMs: number;
  /** Credentials and TLS exactly as the sessions use them. */
  connectOptions?: Pick<IClientOptions, 'username' | 'password' | 'ca' | 'cert' | 'key' | 'rejectUnauthorized'>;
  clock: Clock;
  signal?: AbortSignal;
}

const INERT_TIMER: Timer = {
  set: (() => 0) as unknown as Timer['set'],
  clear: (() => {}) as Timer['clear'],
};

/**
 * One idle test on a connection of its own, through the same path as the live sessions:
 * connect (clean, no will, no subscription), stay silent for `idleMs`, send a PINGREQ.
 * - `survived`: the PINGRESP came back (the path keeps connections idle that long);
 * - `closed`: the path closed the connection first, at the idle age reported;
 * - `half-open`: no PINGRESP (the path forgot the connection silently);
 * - `failed`: no connection (the broker or the path is down): nothing learned.
 * The wait for the PINGRESP is max(1 s, 3 x the connect's round trip), at most
 * pingRespTimeoutMs: a false "half-open" only makes the search more careful.
 */
export function probeIdle(options: IdleProbeOptions): Promise<IdleProbeResult> {
  const { clock } = options;
  return new Promise<IdleProbeResult>((resolve) => {
    const timers = new Set<TimerHandle>();
    const later = (fn: () => void, ms: number) => {
      const t = clock.setTimeout(() => {
        timers.delete(t);
        fn();
      }, ms);
      timers.add(t);
    };
    let done = false;
    const startedAt = clock.now();
    let connectedAt: number | null = null;
    let pingSentAt: number | null = null;
    const client = mqtt.connect(options.url, {
      ...options.connectOptions,
      clientId: options.clientId,
      protocolVersion: options.protocolVersion,
      clean: true,
      keepalive: options.keepaliveSec,
      timerVariant: INERT_TIMER,
      reconnectPeriod: 0,
      connectTimeout: options.connectTimeoutMs,
      properties: options.protocolVersion === 5 ? { sessionExpiryInterval: 0 } : undefined,
    });
    const finish = (result: IdleProbeResult) => {
      if (done) return;
      done = true;
      for (const t of timers) clock.clearTimeout(t);
      timers.clear();
      options.signal?.removeEventListener('abort', onAbort);
      client.removeAllListeners('close');
      client.on('error', () => {});
      client.end(true);
      resolve(result);
    };
    const onAbort = () => finish({ outcome: 'failed', reason: 'stopped' });
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort);
    client.on('error', () => {});
    client.on('connect', () => {
      connectedAt = clock.now();
      const answerWithinMs = Math.min(options.pingRespTimeoutMs, Math.max(1000, 3 * (connectedAt - startedAt)));
      later(() => {
        if (!client.connected) return;
        pingSentAt = clock.now();
        client.sendPing();
        later(() => finish({ outcome: 'half-open', idleMs: pingSentAt! - connectedAt! }), answerWithinMs);
      }, options.idleMs);
    });
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'pingresp' && pingSentAt !== null && connectedAt !== null) finish({ outcome: 'survived', idleMs: pingSentAt - connectedAt });
    });
    client.on('close', () => {
      if (connectedAt === null) return finish({ outcome: 'failed', reason: `could not connect to the broker within ${clock.now() - startedAt} ms` });
      // Closed while idle: the path's timeout is that idle age. Closed after the PINGREQ: it was dead by then.
      finish({ outcome: 'closed', idleMs: (pingSentAt ?? clock.now()) - connectedAt });
    });
    later(() => {
      if (connectedAt === null) finish({ outcome: 'failed', reason: `no CONNACK within ${options.connectTimeoutMs} ms` });
    }, options.connectTimeoutMs);
  });
}
