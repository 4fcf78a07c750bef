import type { Logger } from '../log/logger.ts';
import { redactUrl } from '../log/redact.ts';
import type { ConfigFailure } from './broker-errors.ts';

/** broker.protocolVersion: a fixed version, or 'auto' (MQTT 5 first, 3.1.1 when the broker refuses 5). */
export type ProtocolSetting = 5 | 4 | 'auto';
export type ProtocolVersion = 5 | 4;

/** How a connection attempt ended, as far as the protocol version is concerned. */
export type AttemptOutcome =
  /** CONNACK "unacceptable protocol version" (3.1.1 return code 1, MQTT 5 reason 0x84): Aedes, Mosquitto with 3.1 clients. */
  | { kind: 'refused'; detail: string }
  /** The transport was up and CONNECT sent, then the broker closed without a CONNACK and without an error (RabbitMQ 3.x on an MQTT 5 CONNECT). */
  | { kind: 'closed-before-connack' }
  /** Anything else (refused TCP connection, DNS, TLS, timeout, a loss after CONNACK): says nothing about the version. */
  | { kind: 'other' };

export interface AttemptVerdict {
  /** Try the other version at once (same URL, no backoff). */
  retryNow: boolean;
  /** Both versions (or the fixed one) were refused: say it once, as a config failure. */
  failure?: ConfigFailure & { slow: boolean };
}

interface UrlState {
  /** The version a CONNACK accepted last. */
  known: ProtocolVersion | null;
  trying: ProtocolVersion;
  refused: Map<ProtocolVersion, string>;
  announced: ProtocolVersion | null;
  /** Closes without CONNACK in a row (fixed version): a proxy with no broker behind it does that too. */
  closes: number;
}

/** A fixed version: this many closes without CONNACK in a row before it is called a refusal. */
const CLOSES_BEFORE_ERROR = 3;

const NAME: Record<ProtocolVersion, string> = { 5: 'MQTT 5', 4: 'MQTT 3.1.1' };

/**
 * Which MQTT version to speak to each broker URL, shared by the sessions of one gateway (so a
 * broker that refuses MQTT 5 costs one refused attempt, not one per board, and the version in
 * use is logged once). With 'auto': MQTT 5 first; a CONNACK "unacceptable protocol version", or
 * a close right after CONNECT with no CONNACK (RabbitMQ 3.x), makes the next attempt use 3.1.1
 * at once, and a CONNACK with 3.1.1 settles it for that URL. A fixed version is never changed:
 * a refusal becomes one clear ERROR saying so (as does a broker refusing both).
 */
export class ProtocolNegotiation {
  private readonly urls = new Map<string, UrlState>();

  constructor(readonly setting: ProtocolSetting = 'auto') {}

  /** The version the next attempt to `url` uses. */
  versionFor(url: string): ProtocolVersion {
    if (this.setting !== 'auto') return this.setting;
    const s = this.state(url);
    return s.known ?? s.trying;
  }

  /** A CONNACK accepted `version`: logs once per URL (at info) which version is in use. */
  connected(url: string, version: ProtocolVersion, log: Logger): void {
    const s = this.state(url);
    s.known = version;
    s.trying = version;
    s.closes = 0;
    const refused5 = s.refused.get(5);
    s.refused.clear();
    if (s.announced === version) return;
    s.announced = version;
    const where = redactUrl(url);
    if (version === 4 && refused5 !== undefined) {
      log.info({ url: where, protocolVersion: 4 }, `the MQTT broker at ${where} does not accept MQTT 5 (${refused5}): using MQTT 3.1.1`);
    } else {
      log.info({ url: where, protocolVersion: version }, `speaking ${NAME[version]} with the MQTT broker at ${where}`);
    }
  }

  /** An attempt to `url` with `version` ended without CONNACK (or the connection was lost). */
  attemptEnded(url: string, version: ProtocolVersion, outcome: AttemptOutcome): AttemptVerdict {
    if (outcome.kind === 'other') return { retryNow: false };
    const detail = outcome.kind === 'refused' ? `CONNACK: ${outcome.detail}` : `it closed the connection after our ${NAME[version]} CONNECT without answering`;
    const where = redactUrl(url);
    if (this.setting !== 'auto') {
      if (outcome.kind === 'closed-before-connack' && ++this.state(url).closes < CLOSES_BEFORE_ERROR) return { retryNow: false };
      const other: ProtocolVersion = version === 5 ? 4 : 5;
      return {
        retryNow: false,
        failure: {
          kind: 'protocol',
          key: `protocol:${url}:${version}`,
          cause:
            outcome.kind === 'refused'
              ? `the broker does not accept ${NAME[version]} (${detail})`
              : `the broker does not seem to accept ${NAME[version]} (${detail}, ${CLOSES_BEFORE_ERROR} times in a row; a proxy with no broker behind it does that too)`,
          fix: `set broker.protocolVersion to 'auto' (MQTT 5 first, then 3.1.1) or ${other}${version === 5 ? ' (RabbitMQ 3.x and Aedes speak MQTT 3.1.1 only)' : ''}`,
          // A close without CONNACK may also be a broker that is starting: retry on the usual backoff.
          slow: outcome.kind === 'refused',
        },
      };
    }
    const s = this.state(url);
    // This URL has accepted a version before: a close without CONNACK now is the broker (or the
    // proxy in front of it, with no broker behind) going away, not a refusal. Only a CONNACK
    // saying so changes a version that worked (else an outage behind a proxy would downgrade a
    // MQTT 5 broker to 3.1.1 for good, and log an ERROR for an ordinary outage).
    if (outcome.kind === 'closed-before-connack' && s.known !== null) return { retryNow: false };
    s.known = null;
    s.refused.set(version, detail);
    const other: ProtocolVersion = version === 5 ? 4 : 5;
    if (!s.refused.has(other)) {
      s.trying = other;
      return { retryNow: true };
    }
    const both = [...s.refused.entries()].map(([v, d]) => `${NAME[v]}: ${d}`).join('; ');
    const explicit = outcome.kind === 'refused';
    s.refused.clear();
    s.trying = 5;
    return {
      retryNow: false,
      failure: {
        kind: 'protocol',
        key: `protocol:${url}:both`,
        cause: `the broker at ${where} accepted neither MQTT 5 nor MQTT 3.1.1 (${both})`,
        fix: 'check that this URL is an MQTT listener (and, behind a proxy, that the proxy reaches the broker) and read the broker\u2019s log for why it closed the connection',
        slow: explicit,
      },
    };
  }

  private state(url: string): UrlState {
    let s = this.urls.get(url);
    if (!s) this.urls.set(url, (s = { known: null, trying: 5, refused: new Map(), announced: null, closes: 0 }));
    return s;
  }
}

/** MQTT 3.1.1 CONNACK return code 1 / MQTT 5 reason code 0x84: the broker does not speak this version. */
export function isVersionRefusal(code: unknown): boolean {
  return code === 1 || code === 132;
}
