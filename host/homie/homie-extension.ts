import { EventSubscriptions, type Extension } from '../extensions/extension.ts';
import type { Gateway } from '../gateway/gateway.ts';
import type { GatewayDevice } from '../gateway/gateway-device.ts';
import type { RebootInfo } from '../session/device-session.ts';
import { spreadEvery } from '../time/spread-every.ts';
import { bridgeKeepaliveNode, brokerPathNode, describeDevice, keepaliveNode, type HomieDescription } from './homie-description.ts';
import { homieTopics } from './homie-topics.ts';
import { KeepaliveFacts, keepaliveStats } from './keepalive-facts.ts';
import type { MessageInfo } from '../mqtt/broker-session.ts';
import { refreshTopics, RefreshThrottle } from './refresh-requests.ts';

/** The periodic facts check's event (none): one object, not one per board per check. */
const NO_EVENT: { stateChanged?: boolean; reboot?: RebootInfo } = Object.freeze({});

/**
 * `$state`, `$description` and the keepalive facts are published again, with their current
 * values, after every broker (re)connect of the board's session (republish()) and so after a
 * restart: the outbox keeps them in memory only (no journal write per message, no journal file
 * per board at start, issue 15). A broker outage still loses none of them (they wait in the
 * outbox); a crash of the daemon forgets them, and the restarted daemon publishes the current
 * ones. Component values stay journaled: after a restart the daemon does not know them until
 * the board reports again.
 */
const REPUBLISHED = { durable: false } as const;

export interface HomieExtensionOptions {
  /** How often the keepalive facts are looked at (default 5000 ms); only news is published (keepalive-facts.ts). */
  factsCheckMs?: number;
  /** RTT and last-seen are refreshed at least this often while they drift (default 300 s). */
  factsRefreshMs?: number;
  /** Refresh requests (refresh-requests.ts) are answered at most this often per device (default 1000 ms). */
  refreshMinIntervalMs?: number;
}

/**
 * Puts the gateway and every board on MQTT as Homie 5 devices (homieiot.github.io):
 * `$description`, `$state` following the keepalive session, component property values, and
 * the keepalive facts of the `tether` node. Board messages go through each board's durable
 * outbox (retained, QoS 1); after every broker (re)connect of a board's session the current
 * state is published again, since a broker restarted without persistence, or another node of a
 * cluster (RabbitMQ keeps retained messages per node), has not got the retained values. And on
 * a refresh request (refresh-requests.ts) the current state goes out again, not retained.
 */
export class HomieExtension implements Extension {
  readonly name = 'homie';
  private readonly subscriptions: EventSubscriptions;
  /** Each device's `$description` as the JSON published: it never changes while the daemon runs, so it is serialised once, not on every 'up'. */
  private readonly descriptions = new Map<string, string>();
  private readonly facts = new Map<string, KeepaliveFacts>();
  private stopTimer: (() => void) | null = null;
  private stopPathWatch: (() => void) | null = null;
  private lastPathValues = new Map<string, string>();
  private stopping = false;
  private throttle: RefreshThrottle | null = null;
  private offGatewayMessage: (() => void) | null = null;

  constructor(
    private readonly gateway: Gateway,
    private readonly options: HomieExtensionOptions = {},
  ) {
    this.subscriptions = new EventSubscriptions(gateway.events);
  }

  async start(): Promise<void> {
    const { gateway } = this;
    for (const device of gateway.devices) {
      this.descriptions.set(device.id, JSON.stringify(this.describe(device)));
      // Homie 5: a device is `init` until it is ready. (Its session is not up yet, unless shared:
      // its first 'up' publishes the description and the state then current, below.)
      if (!device.brokerConnected) continue;
      device.publish(homieTopics.state(device.id), 'init', 'state', REPUBLISHED);
      device.publish(homieTopics.description(device.id), this.descriptions.get(device.id)!, 'state', REPUBLISHED);
    }
    const on = this.subscriptions.on.bind(this.subscriptions);
    on('deviceState', (device, change) => {
      // Not connected: the next 'up' publishes the state and facts then current (republish()),
      // and the outbox would keep only the latest of each anyway. At 9,900 boards the links come
      // up before their sessions: ten messages a board queued only to be superseded (issue 15).
      if (this.stopping || !device.brokerConnected) return;
      device.publish(homieTopics.state(device.id), change.to, 'state', REPUBLISHED);
      this.publishKeepalive(device, { stateChanged: true });
    });
    on('deviceReboot', (device, info) => this.publishKeepalive(device, { reboot: info }));
    on('componentValue', (device, v) => device.publish(homieTopics.property(device.id, v.component, v.property), v.value, v.kind));
    on('brokerUp', (device) => (device ? this.republish(device) : this.announceGateway()));
    this.stopPathWatch = gateway.pathKeepalive.onChange(() => this.publishPath(false));
    // Each board at its own phase of the period, not all in one turn (at 10,000 boards that turn was a long one).
    this.stopTimer = spreadEvery(gateway.clock, this.options.factsCheckMs ?? 5000, () => gateway.devices, (device) => this.publishKeepalive(device), {
      onError: (err, device) => gateway.log.warn({ device: device.id, err: (err as Error).message }, 'keepalive facts not published'),
      minSliceMs: 20, // a board's check can publish (journal, MQTT): 5,000 boards in 100 ms slices were 100-board turns
    });
    await this.listenForRefresh();
  }

  /**
   * Refresh requests: each board's session subscribes to its own request topic, the gateway's
   * to its own and the broadcast one (QoS 0: a request made while we are away is moot, the
   * reconnect republishes everything anyway).
   */
  private async listenForRefresh(): Promise<void> {
    const { gateway } = this;
    const throttle = new RefreshThrottle(gateway.clock, this.options.refreshMinIntervalMs ?? 1000);
    this.throttle = throttle;
    const requested = (info: MessageInfo) => !this.stopping && !info.retain; // a retained request would replay on every subscribe
    this.subscriptions.on('mqttMessage', (device, topic, _payload, info) => {
      if (topic === refreshTopics.device(device.id) && requested(info)) throttle.request(device.id, () => this.refresh(device));
    });
    const session = gateway.mqtt;
    const onMessage = (topic: string, _payload: Buffer, info: MessageInfo) => {
      if (!requested(info)) return;
      if (topic === refreshTopics.broadcast || topic === refreshTopics.device(gateway.id)) {
        throttle.request(gateway.id, () => this.refreshGateway());
        for (const device of gateway.devices) throttle.request(device.id, () => this.refresh(device));
      }
    };
    session.on('message', onMessage);
    this.offGatewayMessage = () => session.off('message', onMessage);
    await session.subscribe(refreshTopics.broadcast, 0);
    await session.subscribe(refreshTopics.device(gateway.id), 0);
    await Promise.all(gateway.devices.map((d) => d.mqtt.subscribe(refreshTopics.device(d.id), 0)));
  }

  /** Every board leaves on purpose: `$state disconnected`, before the queues are flushed. */
  async beforeStop(): Promise<void> {
    this.stopping = true;
    this.stopTimer?.();
    this.stopTimer = null;
    for (const device of this.gateway.devices) device.publish(homieTopics.state(device.id), 'disconnected', 'state', REPUBLISHED);
  }

  async stop(): Promise<void> {
    this.throttle?.stop();
    this.offGatewayMessage?.();
    this.offGatewayMessage = null;
    this.stopTimer?.();
    this.stopTimer = null;
    this.stopPathWatch?.();
    this.stopPathWatch = null;
    this.subscriptions.clear();
  }

  private describe(device: GatewayDevice): HomieDescription {
    const { settings } = device;
    return describeDevice({
      name: settings.name ?? settings.id,
      type: settings.board === 'espruino' ? 'tether-espruino' : 'tether-uno',
      root: this.gateway.id,
      parent: this.gateway.id,
      nodes: Object.fromEntries([...device.components.map((c) => [c.id, c.node] as const), ['tether', device.link.keepTraffic ? bridgeKeepaliveNode : keepaliveNode] as const]),
    });
  }

  /** The gateway's own device, published directly on its session (its will says `lost`); `retain` false: a refresh. */
  private announceGateway(retain = true): void {
    const { gateway } = this;
    const description = describeDevice({
      name: gateway.config.gateway.name,
      type: 'tether-gateway',
      children: gateway.devices.map((d) => d.id),
      nodes: { broker: brokerPathNode },
    });
    void gateway.mqtt.publish(homieTopics.description(gateway.id), JSON.stringify(description), { qos: 1, retain }).catch(() => {});
    void gateway.mqtt.publish(homieTopics.state(gateway.id), 'ready', { qos: 1, retain }).catch(() => {});
    this.publishPath(true, retain);
  }

  private refreshGateway(): void {
    if (this.stopping || !this.gateway.mqtt.connected) return;
    this.announceGateway(false);
  }

  /**
   * A board's current state, not retained, straight on its session (not through the outbox: an
   * answer is only worth something now; the retained state goes through the outbox as always).
   */
  private refresh(device: GatewayDevice): void {
    if (this.stopping) return;
    const session = device.mqtt;
    if (!session.connected) return;
    const send = (topic: string, value: string) => void session.publish(topic, value, { qos: 1, retain: false }).catch(() => {});
    send(homieTopics.description(device.id), this.descriptions.get(device.id)!);
    send(homieTopics.state(device.id), device.link.state);
    for (const component of device.components) {
      for (const [property, value] of component.values()) send(homieTopics.property(device.id, component.id, property), value);
    }
    // Every fact as it is now (a fresh tracker says all of them), the published tracker untouched.
    const facts = new KeepaliveFacts({ clock: this.gateway.clock }).due(device.link.stats(), { stateChanged: true });
    for (const f of facts) send(homieTopics.property(device.id, 'tether', f.property), f.value);
    this.gateway.log.debug({ device: device.id }, 'refresh request: current state published (not retained)');
  }

  /**
   * The broker path's facts on the gateway device (node `broker`), on its own session: what
   * changed, or everything after a (re)connect. Drops are summed over the gateway's sessions.
   */
  private publishPath(all: boolean, retain = true): void {
    const { gateway } = this;
    if (this.stopping || !gateway.mqtt.connected) return;
    const path = gateway.pathKeepalive.stats;
    // Every session's counts as they are (no stats object per session: a fleet has thousands). A
    // board in shared-session mode has the gateway's session: counted once.
    let closed = gateway.mqtt.dropCounts.closed;
    let halfOpen = gateway.mqtt.dropCounts['half-open'];
    for (const device of gateway.devices) {
      const session = device.mqtt;
      if (session === gateway.mqtt) continue;
      closed += session.dropCounts.closed;
      halfOpen += session.dropCounts['half-open'];
    }
    const values: Record<string, string> = {
      'ping-interval': (path.intervalMs / 1000).toFixed(1),
      'idle-timeout': ((path.timeoutMs ?? 0) / 1000).toFixed(1),
      'drops-closed': String(closed),
      'drops-half-open': String(halfOpen),
      'keepalive-bytes-per-day': String(gateway.mqtt.stats.keepaliveBytesPerDay),
    };
    for (const [property, value] of Object.entries(values)) {
      if (!all && this.lastPathValues.get(property) === value) continue;
      if (retain) this.lastPathValues.set(property, value);
      void gateway.mqtt.publish(homieTopics.property(gateway.id, 'broker', property), value, { qos: 1, retain }).catch(() => {});
    }
  }

  private republish(device: GatewayDevice): void {
    if (this.stopping) return;
    // Coalescing in the outbox keeps this cheap.
    device.publish(homieTopics.description(device.id), this.descriptions.get(device.id)!, 'state', REPUBLISHED);
    device.publish(homieTopics.state(device.id), device.link.state, 'state', REPUBLISHED);
    for (const component of device.components) {
      for (const [property, value] of component.values()) device.publish(homieTopics.property(device.id, component.id, property), value, 'state');
    }
    this.facts.get(device.id)?.reset(); // the broker may have lost the retained facts too
    this.publishKeepalive(device, { stateChanged: true });
  }

  private publishKeepalive(device: GatewayDevice, event: { stateChanged?: boolean; reboot?: RebootInfo } = NO_EVENT): void {
    // Not connected: republish() on the next 'up' resets the facts and publishes them all; all
    // but a reset's cause, which only the reboot event carries (queued as before).
    if (!event.reboot && !device.brokerConnected) return;
    let facts = this.facts.get(device.id);
    if (!facts) {
      facts = new KeepaliveFacts({ clock: this.gateway.clock, refreshMs: this.options.factsRefreshMs });
      this.facts.set(device.id, facts);
    }
    const due = facts.due(keepaliveStats(device.link), event);
    // Indexed: the periodic check (every board every few seconds) usually finds nothing, and makes nothing.
    for (let i = 0; i < due.length; i++) device.publish(homieTopics.property(device.id, 'tether', due[i]!.property), due[i]!.value, due[i]!.kind, REPUBLISHED);
  }
}
