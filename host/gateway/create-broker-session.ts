import type { BrokerSettings } from '../config/config-schema.ts';
import type { Logger } from '../log/logger.ts';
import { BrokerSession, type FinalMessage } from '../mqtt/broker-session.ts';
import type { Clock } from '../time/clock.ts';

/** The one place a BrokerSession is made from the config: the gateway's and each board's. */
export function createBrokerSession(
  broker: BrokerSettings,
  fields: { url: string; clientId: string; will: FinalMessage; clock: Clock; logger: Logger },
): BrokerSession {
  return new BrokerSession({
    url: fields.url,
    clientId: fields.clientId,
    will: fields.will,
    keepaliveSec: broker.keepaliveSec,
    pingRespTimeoutMs: broker.pingRespTimeoutMs,
    protocolVersion: broker.protocolVersion,
    sessionExpirySec: broker.sessionExpirySec,
    username: broker.username,
    password: broker.password,
    tls: broker.tls,
    backoff: broker.backoff,
    clock: fields.clock,
    logger: fields.logger,
  });
}
