import type { EventEmitter } from 'node:events';
import type { PublishKind } from '../components/device-component.ts';
import type { MessageInfo } from '../mqtt/broker-session.ts';
import type { RebootInfo, StateChange } from '../session/device-session.ts';
import type { GatewayDevice } from './gateway-device.ts';

export interface ComponentValue {
  component: string;
  property: string;
  value: string;
  kind: PublishKind;
}

/**
 * What the gateway tells its extensions. The gateway owns the device links and the broker
 * sessions; extensions (Homie, commands, metrics, ...) listen here and never reach into
 * each other.
 */
export interface GatewayEvents {
  /** A device's keepalive state changed (init, ready, sleeping, lost, disconnected). */
  deviceState: [device: GatewayDevice, change: StateChange];
  /** A device rebooted (detected from HELLO or a new boot id). */
  deviceReboot: [device: GatewayDevice, info: RebootInfo];
  /** A Johnny-Five component reported a value. */
  componentValue: [device: GatewayDevice, value: ComponentValue];
  /** Text a board printed outside tether frames (the Espruino console). */
  deviceConsole: [device: GatewayDevice, text: string];
  /** A device's MQTT session connected (after start or a reconnect); `device` null: the gateway's own. */
  brokerUp: [device: GatewayDevice | null, info: { sessionPresent: boolean }];
  /** A message for a device arrived from the broker (on its session, or routed from a shared one). */
  mqttMessage: [device: GatewayDevice, topic: string, payload: Buffer, info: MessageInfo];
}

export type GatewayEventBus = EventEmitter<GatewayEvents>;
