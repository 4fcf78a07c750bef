import { mkdir } from 'node:fs/promises';
import type { TetherConfig } from '../config/config-schema.ts';
import { describeDevice } from '../homie/homie-description.ts';
import { homieTopics } from '../homie/homie-topics.ts';
import type { Logger } from '../log/logger.ts';
import { BrokerSession } from '../mqtt/broker-session.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../mqtt/embedded-broker.ts';
import { startMetricsServer, type MetricsServer } from '../metrics/metrics-server.ts';
import { gatewayMetricsSource } from '../metrics/tether-metrics.ts';
import { createGatewayWatchdog } from '../systemd/gateway-watchdog.ts';
import type { SystemdWatchdog } from '../systemd/systemd-watchdog.ts';
import { join } from 'node:path';
import { startControlServer, type ControlServer } from './control-server.ts';
import { DeviceBridge } from './device-bridge.ts';

export interface GatewayStartOptions {
  /** Where NOTIFY_SOCKET and WATCHDOG_USEC are read (default process.env; {} keeps systemd out). */
  env?: NodeJS.ProcessEnv;
}

/**
 * The daemon's core: an MQTT session for the gateway itself (its own `$state` and will),
 * one DeviceBridge per configured board, and, when no broker URL is configured, an
 * embedded broker.
 */
export class Gateway {
  /** The Prometheus endpoint, when config.metrics is set. */
  metrics: MetricsServer | null = null;
  /** The local control socket (`tether flash --daemon`). */
  control: ControlServer | null = null;
  /** READY/STATUS/WATCHDOG/STOPPING for systemd, when started by it (NOTIFY_SOCKET set). */
  systemd: SystemdWatchdog | null = null;

  private constructor(
    readonly config: TetherConfig,
    readonly brokerUrl: string,
    readonly embedded: EmbeddedBroker | null,
    readonly session: BrokerSession,
    readonly devices: DeviceBridge[],
    private readonly log: Logger,
  ) {}

  static async start(config: TetherConfig, logger: Logger, options: GatewayStartOptions = {}): Promise<Gateway> {
    let embedded: EmbeddedBroker | null = null;
    let brokerUrl = config.broker.url;
    if (!brokerUrl) {
      embedded = await startEmbeddedBroker({ port: config.broker.embeddedPort, logger });
      brokerUrl = embedded.url;
      logger.info({ url: brokerUrl }, `no broker configured: started the embedded MQTT broker on ${brokerUrl} (set broker.url to use your own)`);
    } else {
      logger.info({ url: brokerUrl }, `using the MQTT broker at ${brokerUrl}`);
    }
    await mkdir(config.queue.dir, { recursive: true });
    // Aedes speaks MQTT 3.1.1: persistent sessions there use clean=false instead of session expiry.
    const broker = embedded ? { ...config.broker, protocolVersion: 4 as const } : config.broker;
    const gw = config.gateway;
    const session = new BrokerSession({
      url: brokerUrl,
      clientId: `tether-${gw.id}`,
      keepaliveSec: config.broker.keepaliveSec,
      pingRespTimeoutMs: config.broker.pingRespTimeoutMs,
      will: { topic: homieTopics.state(gw.id), payload: 'lost', qos: 1, retain: true },
      protocolVersion: broker.protocolVersion,
      sessionExpirySec: broker.sessionExpirySec,
      username: config.broker.username,
      password: config.broker.password,
      tls: config.broker.tls,
      backoff: config.broker.backoff,
      logger: logger.child({ device: gw.id }),
    });
    const description = describeDevice({ name: gw.name, type: 'tether-gateway', children: config.devices.map((d) => d.id), nodes: {} });
    const announce = () => {
      void session.publish(homieTopics.description(gw.id), JSON.stringify(description), { qos: 1, retain: true }).catch(() => {});
      void session.publish(homieTopics.state(gw.id), 'ready', { qos: 1, retain: true }).catch(() => {});
    };
    session.on('up', announce);
    session.start();
    const devices: DeviceBridge[] = [];
    for (const settings of config.devices) {
      devices.push(
        await DeviceBridge.create({
          settings,
          gatewayId: gw.id,
          brokerUrl,
          broker,
          queue: config.queue,
          logger,
          sharedSession: config.broker.sharedSession ? session : undefined,
        }),
      );
    }
    for (const device of devices) device.start();
    logger.info({ devices: devices.map((d) => d.id) }, `gateway ${gw.id} started with ${devices.length} device(s)`);
    const gateway = new Gateway(config, brokerUrl, embedded, session, devices, logger);
    if (config.metrics) {
      try {
        gateway.metrics = await startMetricsServer({ ...config.metrics, source: gatewayMetricsSource(gateway), logger });
      } catch (err) {
        await gateway.stop();
        throw err;
      }
      logger.info({ url: gateway.metrics.url }, `Prometheus metrics at ${gateway.metrics.url}`);
    }
    try {
      gateway.control = await startControlServer(config.control?.socket ?? join(config.queue.dir, 'control.sock'), devices, logger);
    } catch (err) {
      await gateway.stop();
      throw err;
    }
    gateway.systemd = createGatewayWatchdog(gateway, logger, { env: options.env });
    gateway.systemd?.start();
    return gateway;
  }

  /** Graceful stop: every device `disconnected`, queues flushed, clean MQTT disconnects. */
  async stop(): Promise<void> {
    await this.systemd?.stop(); // STOPPING=1 first: systemd stops expecting WATCHDOG=1
    await this.control?.close();
    await Promise.all(this.devices.map((d) => d.stop()));
    await this.session.stop({ finalPublish: { topic: homieTopics.state(this.config.gateway.id), payload: 'disconnected', qos: 1, retain: true } });
    await this.embedded?.close();
    await this.metrics?.close();
    this.log.info({}, 'gateway stopped');
  }
}
