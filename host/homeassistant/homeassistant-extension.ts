import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EventSubscriptions, type Extension } from '../extensions/extension.ts';
import type { Gateway } from '../gateway/gateway.ts';
import type { GatewayDevice } from '../gateway/gateway-device.ts';
import type { Logger } from '../log/logger.ts';
import type { MessageInfo } from '../mqtt/broker-session.ts';
import { PACKAGE_ROOT } from '../paths.ts';
import { boardDiscovery, boardDiscoveryTopics, gatewayDiscovery, ownDiscoveryTopics, type BoardDescription, type DiscoveryContext, type DiscoveryMessage } from './discovery.ts';

/** Board configs are sent again after every broker (re)connect: the outbox need not journal them (issue 15). */
const REPUBLISHED = { durable: false } as const;

export interface HomeAssistantOptions {
  /** Home Assistant's discovery_prefix (default `homeassistant`). */
  prefix: string;
  /** Home Assistant's birth message topic (default `homeassistant/status`). */
  statusTopic: string;
}

/**
 * Home Assistant MQTT discovery: a Home Assistant device per board (via the gateway's device),
 * an entity per component property and the keepalive facts as diagnostic entities, all
 * pointing at the Homie topics (discovery.ts), with availability from the gateway's and the
 * board's `$state` (availability.ts). Published retained at QoS 1: a board's configs through
 * its outbox (in memory only: they are sent again on every connect), the gateway's on its own session. Sent again after every broker
 * (re)connect and when Home Assistant announces itself (`online` on its status topic).
 *
 * Configs the current config would not publish (a board or component taken out of the config)
 * are deleted with an empty retained payload on the next start, found two ways: the config
 * topics published are recorded in `<queue.dir>/homeassistant-configs.json` (a persistent MQTT 5
 * session keeps its subscriptions, and with Retain Handling 1 the broker does not hand retained
 * configs back to it), and any retained config under this gateway's node_id (on its session) or
 * one of its boards' (on the board's session) the broker does hand back (a new session, MQTT
 * 3.1.1) that is not expected is deleted too. That also clears the board configs earlier
 * versions published under the gateway's node_id (discovery.ts): they are in the record and
 * under the gateway's node_id.
 *
 * A board's configs name the board only, so gateways sharing a board publish the same topics.
 * A gateway that deletes a board's configs as stale (the board taken out of its config because
 * it moved to another gateway for good) would delete the new owner's: the gateway serving a
 * board watches its configs and publishes them again when they are emptied.
 */
export class HomeAssistantExtension implements Extension {
  readonly name = 'homeassistant';
  private readonly subscriptions: EventSubscriptions;
  private readonly log: Logger;
  private context: DiscoveryContext | null = null;
  /** Every config topic the current config publishes (anything else under our node_id is stale). */
  private readonly expected = new Set<string>();
  /** The device facts last published per board (HELLO may change them). */
  private readonly published = new Map<string, string>();
  /** Stale config topics still to delete (kept in the record until the broker acknowledged). */
  private readonly pending = new Set<string>();
  /** Stale config topics deleted in this run (a retained copy handed back meanwhile is not news). */
  private readonly removed = new Set<string>();
  private recordPath = '';
  private saving: Promise<void> = Promise.resolve();
  private offMessage: (() => void) | null = null;
  private stopping = false;

  constructor(
    private readonly gateway: Gateway,
    private readonly options: HomeAssistantOptions,
  ) {
    this.subscriptions = new EventSubscriptions(gateway.events);
    this.log = gateway.log.child({ extension: this.name });
  }

  async start(): Promise<void> {
    const { gateway, options } = this;
    const context: DiscoveryContext = {
      prefix: options.prefix,
      gatewayId: gateway.id,
      gatewayName: gateway.config.gateway.name,
      tetherVersion: await tetherVersion(),
      commands: gateway.config.commands.enabled,
    };
    this.context = context;
    for (const m of gatewayDiscovery(context)) this.expected.add(m.topic);
    for (const device of gateway.devices) for (const topic of boardDiscoveryTopics(context, this.describe(device))) this.expected.add(topic);
    this.recordPath = join(gateway.config.queue.dir, RECORD_FILE);
    for (const topic of await this.readRecord()) if (!this.expected.has(topic)) this.pending.add(topic);
    await this.saveRecord();

    const on = this.subscriptions.on.bind(this.subscriptions);
    on('brokerUp', (device) => {
      if (device) {
        this.publishBoard(device);
        return;
      }
      this.publishGateway();
      for (const topic of this.pending) this.remove(topic);
    });
    on('deviceState', (device, change) => {
      // HELLO came (or changed: a new firmware): the device facts go out with it.
      if (change.to === 'ready' && this.published.has(device.id) && this.published.get(device.id) !== this.deviceFacts(device)) this.publishBoard(device);
    });

    const session = gateway.mqtt;
    const onMessage = (topic: string, payload: Buffer, info: MessageInfo) => this.onMessage(topic, payload, info);
    session.on('message', onMessage);
    this.offMessage = () => session.off('message', onMessage);
    // A board's configs are watched on the session that publishes them (its own; the
    // gateway's in shared-session mode), with No Local: the broker hands back only what
    // someone else published there (an emptied config, a retained stale one), not each config
    // the board just sent. On the gateway's session, that echo was 8 QoS 1 messages a board
    // to parse and acknowledge at every start (issue 15). On MQTT 3.1.1 the echo comes, and
    // is ignored as before (an expected config).
    const underPrefix = `${options.prefix}/`;
    on('mqttMessage', (_device, topic, payload, info) => {
      if (topic.startsWith(underPrefix)) this.onMessage(topic, payload, info);
    });
    // Remembered by the sessions and sent with every connect (they start after the extensions).
    await session.subscribe(options.statusTopic, 1);
    await session.subscribe(ownDiscoveryTopics(options.prefix, gateway.id), 1, { noLocal: true });
    await Promise.all(gateway.devices.map((d) => d.mqtt.subscribe(ownDiscoveryTopics(options.prefix, d.id), 1, { noLocal: true })));
  }

  async beforeStop(): Promise<void> {
    this.stopping = true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.offMessage?.();
    this.offMessage = null;
    this.subscriptions.clear();
    await this.saving;
  }

  /** Sends every config again (Home Assistant restarted and forgot the ones it had). */
  rediscover(): void {
    this.publishGateway();
    for (const device of this.gateway.devices) this.publishBoard(device);
  }

  private onMessage(topic: string, payload: Buffer, info: MessageInfo): void {
    if (this.stopping) return;
    if (topic === this.options.statusTopic) {
      if (payload.toString() !== 'online') return;
      this.log.info({ topic, retained: info.retain }, 'Home Assistant is online: sending discovery again');
      this.rediscover();
      return;
    }
    if (payload.length === 0) {
      // Someone deleted a config of a board we serve (another gateway that had the board once).
      if (this.expected.has(topic)) this.restoreBoard(topic);
      return;
    }
    if (this.expected.has(topic) || !this.isOwnConfig(topic)) return;
    // A config of ours the current config does not publish: a board or component was removed.
    // (Our own empty payload comes back too, and is ignored above.)
    if (this.pending.has(topic) || this.removed.has(topic)) return;
    this.remove(topic);
  }

  /** Deletes one stale config (an empty retained payload), then forgets it in the record. */
  private remove(topic: string): void {
    this.pending.add(topic);
    this.gateway.mqtt.publish(topic, '', { qos: 1, retain: true }).then(
      () => {
        this.log.info({ topic }, `removed a Home Assistant entity no longer configured (${topic})`);
        this.pending.delete(topic);
        this.removed.add(topic);
        void this.saveRecord();
      },
      (err: Error) => {
        // Still in the record: tried again on the next connect.
        this.log.debug({ topic, err: err.message }, 'could not remove a stale Home Assistant config yet');
      },
    );
  }

  private async readRecord(): Promise<string[]> {
    let text: string;
    try {
      text = await readFile(this.recordPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ path: this.recordPath, err: (err as Error).message }, 'could not read the record of Home Assistant configs');
      return [];
    }
    try {
      const parsed = JSON.parse(text) as { topics?: unknown };
      if (Array.isArray(parsed.topics) && parsed.topics.every((t) => typeof t === 'string')) return parsed.topics as string[];
    } catch {
      // reported below
    }
    this.log.warn({ path: this.recordPath }, 'ignored a damaged record of Home Assistant configs (stale entities are then found on the broker only)');
    return [];
  }

  /** What this gateway has on the broker: the expected configs and the stale ones not yet deleted. */
  private saveRecord(): Promise<void> {
    this.saving = this.saving.then(async () => {
      const tmp = `${this.recordPath}.tmp`;
      try {
        await writeFile(tmp, `${JSON.stringify({ topics: [...this.expected, ...this.pending] }, null, 1)}\n`, { mode: 0o600 });
        await rename(tmp, this.recordPath);
      } catch (err) {
        this.log.warn({ path: this.recordPath, err: (err as Error).message }, 'could not write the record of Home Assistant configs');
      }
    });
    return this.saving;
  }

  /** The node_ids this gateway publishes under: its own id and its boards'. */
  private ownNodeIds(): string[] {
    return [this.gateway.id, ...this.gateway.devices.map((d) => d.id)];
  }

  /** The node_id of a discovery config topic under our prefix (undefined: not one). */
  private nodeIdOf(topic: string): string | undefined {
    const parts = topic.split('/');
    const prefix = this.options.prefix.split('/');
    if (parts.length !== prefix.length + 4 || !prefix.every((p, i) => parts[i] === p) || parts[prefix.length + 3] !== 'config') return undefined;
    return parts[prefix.length + 1];
  }

  private isOwnConfig(topic: string): boolean {
    const nodeId = this.nodeIdOf(topic);
    return nodeId !== undefined && this.ownNodeIds().includes(nodeId);
  }

  /** An expected config of a board was emptied: publish it again if we serve the board. */
  private restoreBoard(topic: string): void {
    const device = this.gateway.devices.find((d) => d.id === this.nodeIdOf(topic));
    if (!device || !this.context || device.holdMode === 'standby' || !this.published.has(device.id)) return;
    const message = boardDiscovery(this.context, this.describe(device)).find((m) => m.topic === topic);
    if (!message) return;
    this.log.info({ topic, device: device.id }, `a Home Assistant config of ${device.id} was deleted by someone else: publishing it again`);
    device.publish(message.topic, JSON.stringify(message.config), 'state', REPUBLISHED);
  }

  private publishGateway(): void {
    if (this.stopping || !this.context) return;
    for (const m of gatewayDiscovery(this.context)) {
      void this.gateway.mqtt.publish(m.topic, JSON.stringify(m.config), { qos: 1, retain: true }).catch(() => {
        // Not connected: the next 'up' publishes it again.
      });
    }
  }

  private publishBoard(device: GatewayDevice): void {
    if (this.stopping || !this.context) return;
    const messages: DiscoveryMessage[] = boardDiscovery(this.context, this.describe(device));
    // Retained, QoS 1, through the outbox (it keeps only the latest of each topic); in memory
    // only (REPUBLISHED): every 'up' of the board's session, and so every restart, sends them again.
    for (const m of messages) device.publish(m.topic, JSON.stringify(m.config), 'state', REPUBLISHED);
    this.published.set(device.id, this.deviceFacts(device));
  }

  private deviceFacts(device: GatewayDevice): string {
    return JSON.stringify(this.describe(device).firmware);
  }

  private describe(device: GatewayDevice): BoardDescription {
    const { settings } = device;
    let hello = null;
    try {
      hello = device.link.session.hello;
    } catch {
      // not open yet
    }
    return {
      id: device.id,
      name: settings.name ?? settings.id,
      board: settings.board,
      components: device.components,
      firmware: hello ? { name: hello.name, fwMajor: hello.fwMajor, fwMinor: hello.fwMinor } : null,
    };
  }
}

/** Under queue.dir: the config topics this gateway published, for the next start. */
const RECORD_FILE = 'homeassistant-configs.json';

async function tetherVersion(): Promise<string> {
  try {
    const pkg = JSON.parse(await readFile(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
