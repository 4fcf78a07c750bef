import type { BrokerSettings } from '../config/config-schema.ts';
import type { Logger } from '../log/logger.ts';
import type { BrokerCredentials } from '../mqtt/broker-credentials.ts';
import { BrokerSession, type FinalMessage } from '../mqtt/broker-session.ts';
import type { KeepaliveTraffic } from '../mqtt/keepalive-traffic.ts';
import type { Clock } from '../time/clock.ts';

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
  return new BrokerSession({
    url: fields.url,
    clientId: fields.clientId,
    will: fields.will,
    keepaliveSec: broker.keepaliveSec,
    pingRespTimeoutMs: broker.pingRespTimeoutMs,
    protocolVersion: broker.protocolVersion,
    sessionExpirySec: broker.sessionExpirySec,
    willDelaySec: broker.willDelaySec,
    keepaliveTraffic: fields.keepaliveTraffic,
    username: fields.credentials.username,
    password: fields.credentials.password,
    tls: broker.tls,
    backoff: broker.backoff,
    clock: fields.clock,
    logger: fields.logger,
  });
}
