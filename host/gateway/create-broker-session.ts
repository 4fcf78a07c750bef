import type { BrokerSettings } from '../config/config-schema.ts';
import type { Logger } from '../log/logger.ts';
import type { BrokerCredentials } from '../mqtt/broker-credentials.ts';
import { ConfigFailureLog } from '../mqtt/broker-errors.ts';
import { BrokerSession, type FinalMessage } from '../mqtt/broker-session.ts';
import type { KeepaliveTraffic } from '../mqtt/keepalive-traffic.ts';
import { ProtocolNegotiation } from '../mqtt/protocol-negotiation.ts';
import type { Clock } from '../time/clock.ts';

/**
 * One log of config failures (wrong password, untrusted CA) per set of credentials, i.e. per
 * gateway: its sessions all fail the same way, and the user needs to read it once.
 */
const failureLogs = new WeakMap<BrokerCredentials, ConfigFailureLog>();

/** One MQTT version negotiation per gateway too (keyed the same way): one refused MQTT 5 attempt, one log line. */
const negotiations = new WeakMap<BrokerCredentials, ProtocolNegotiation>();

/** The gateway's negotiation (the version in use per URL), shared by all its sessions. */
export function protocolNegotiation(broker: Pick<BrokerSettings, 'protocolVersion'>, credentials: BrokerCredentials): ProtocolNegotiation {
  let negotiation = negotiations.get(credentials);
  if (!negotiation || negotiation.setting !== broker.protocolVersion) negotiations.set(credentials, (negotiation = new ProtocolNegotiation(broker.protocolVersion)));
  return negotiation;
}

/** The one place a BrokerSession is made from the config: the gateway's and each board's. */
export function createBrokerSession(
  broker: BrokerSettings,
  fields: {
    url: string;
    clientId: string;
    will: FinalMessage;
    credentials: BrokerCredentials;
    clock: Clock;
    logger: Logger;
    /** The path's PINGREQ schedule (the gateway's PathKeepalive). */
    keepaliveTraffic?: KeepaliveTraffic;
  },
): BrokerSession {
  let configFailures = failureLogs.get(fields.credentials);
  if (!configFailures) failureLogs.set(fields.credentials, (configFailures = new ConfigFailureLog()));
  return new BrokerSession({
    // Several configured URLs (a cluster) are tried in turn; the embedded broker is one URL.
    url: broker.urls !== undefined && broker.urls.length > 1 && broker.urls[0] === fields.url ? broker.urls : fields.url,
    clientId: fields.clientId,
    will: fields.will,
    keepaliveSec: broker.keepaliveSec,
    pingRespTimeoutMs: broker.pingRespTimeoutMs,
    negotiation: protocolNegotiation(broker, fields.credentials),
    sessionExpirySec: broker.sessionExpirySec,
    willDelaySec: broker.willDelaySec,
    keepaliveTraffic: fields.keepaliveTraffic,
    username: fields.credentials.username,
    password: fields.credentials.password,
    tls: broker.tls,
    tcp: broker.tcp,
    websocketPingMs: broker.websocketPingSec === undefined ? undefined : broker.websocketPingSec * 1000,
    configFailures,
    backoff: broker.backoff,
    clock: fields.clock,
    logger: fields.logger,
  });
}
