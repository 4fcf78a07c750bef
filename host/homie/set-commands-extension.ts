import { EventSubscriptions, type Extension } from '../extensions/extension.ts';
import type { Gateway } from '../gateway/gateway.ts';
import type { GatewayDevice } from '../gateway/gateway-device.ts';
import { LogRateLimiter } from '../log/log-rate-limiter.ts';
import type { Logger } from '../log/logger.ts';
import type { MessageInfo } from '../mqtt/broker-session.ts';
import { homieTopics, parseSetTopic } from './homie-topics.ts';
import { parseSetPayload } from './set-payload.ts';

/**
 * Homie `/set` commands: subscribes each board's session to `homie/5/<id>/+/+/set` (QoS 1,
 * so commands published while the daemon is away are kept by the broker), validates each
 * payload against the property's schema, and hands a valid value to the component.
 * Nothing moves an actuator but a fresh, valid command: a retained /set is ignored (Homie 5:
 * "/set topics MUST NOT be retained"), since a broker re-sends it on every resubscribe.
 */
export class SetCommandsExtension implements Extension {
  readonly name = 'commands';
  private readonly subscriptions: EventSubscriptions;
  private readonly log: Logger;
  /** Topics already warned about for being retained (once each). */
  private readonly retainedWarned = new Set<string>();
  private readonly rejections: LogRateLimiter;

  constructor(private readonly gateway: Gateway) {
    this.subscriptions = new EventSubscriptions(gateway.events);
    this.log = gateway.log.child({ extension: this.name });
    this.rejections = new LogRateLimiter(gateway.clock, { windowMs: 60_000, burst: 10 });
  }

  async start(): Promise<void> {
    this.subscriptions.on('mqttMessage', (device, topic, payload, info) => this.onMessage(device, topic, payload, info));
    // Remembered by each session and sent with every connect (the sessions start after this).
    await Promise.all(this.gateway.devices.map((d) => d.mqtt.subscribe(homieTopics.allSets(d.id), 1)));
  }

  async stop(): Promise<void> {
    this.subscriptions.clear();
  }

  private onMessage(device: GatewayDevice, topic: string, payload: Buffer, info: MessageInfo): void {
    const target = parseSetTopic(device.id, topic);
    if (!target) return;
    if (info.retain) {
      if (!this.retainedWarned.has(topic)) {
        this.retainedWarned.add(topic);
        this.log.warn(
          { device: device.id, topic },
          `ignored a retained /set on ${topic}: commands must not be retained; clear it with: mosquitto_pub -r -n -t '${topic}'`,
        );
      }
      return;
    }
    const component = device.components.find((c) => c.id === target.node);
    const property = component?.node.properties[target.property];
    if (!component || !property) {
      this.reject(device, topic, 'no such settable property');
      return;
    }
    const result = parseSetPayload(property, payload);
    if (!result.ok) {
      this.reject(device, topic, result.reason);
      return;
    }
    device.counters.setsApplied++;
    this.log.info({ device: device.id, topic, value: result.value }, 'applying /set');
    component.set(target.property, result.value);
  }

  private reject(device: GatewayDevice, topic: string, reason: string): void {
    device.counters.setsRejected++;
    // Bad commands come from outside: at most 10 lines a minute per device (all are counted in metrics).
    const { ok, suppressed } = this.rejections.allow(device.id);
    if (!ok) return;
    this.log.warn(
      { device: device.id, topic: topic.slice(0, 200), reason, rejected: device.counters.setsRejected, suppressed },
      `rejected /set: ${reason}${suppressed > 0 ? ` (and ${suppressed} more not logged in the last minute)` : ''}`,
    );
  }
}
