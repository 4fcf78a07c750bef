import type { HomieNode, HomieProperty } from '../homie/homie-description.ts';
import { keepaliveNode } from '../homie/homie-description.ts';
import { homieTopics } from '../homie/homie-topics.ts';
import { boardAvailability, gatewayAvailability, GATEWAY_AVAILABLE_STATES, BOARD_AVAILABLE_STATES, oneOfTemplate } from './availability.ts';

/**
 * Home Assistant MQTT discovery payloads for the gateway and its boards (pure: the extension
 * publishes what comes back). One config per entity on
 * `<prefix>/<component>/<node-id>/<object-id>/config`, where the node_id level is the device:
 * the gateway's own entity under the gateway id, a board's under the board id. A board's
 * topics, unique_ids and device identifier name the board only, never the gateway serving it,
 * so a board that moves to another gateway (README "More than one gateway") is the same Home
 * Assistant device, and the new owner's configs replace the old owner's retained ones instead
 * of adding a second device. (Homie device ids are one namespace, so a board id never equals a
 * gateway id.) Entities read and command the Homie topics themselves: states are the
 * retained Homie property values, commands go to the Homie `/set` topics, where the same
 * validation as every other `/set` applies (host/homie/set-commands-extension.ts).
 */

export type HaComponent = 'binary_sensor' | 'sensor' | 'switch' | 'light';

export interface DiscoveryMessage {
  topic: string;
  /** The entity's config (JSON-serialised by the publisher); empty payloads delete an entity. */
  config: Record<string, unknown>;
}

export interface DiscoveryContext {
  /** Home Assistant's discovery_prefix. */
  prefix: string;
  gatewayId: string;
  gatewayName: string;
  tetherVersion: string;
  /** /set commands enabled: settable properties become switches and lights, else read-only binary sensors. */
  commands: boolean;
}

/** What HELLO told about the firmware (null until the board said HELLO). */
export interface FirmwareFacts {
  name: string;
  fwMajor: number;
  fwMinor: number;
}

export interface BoardDescription {
  id: string;
  name: string;
  board: 'uno' | 'espruino';
  /** The configured components, as their Homie nodes (`type` is the component type: led, relay, ...). */
  components: ReadonlyArray<{ id: string; node: HomieNode }>;
  firmware: FirmwareFacts | null;
}

const HOMIE_TRUE = 'true';
const HOMIE_FALSE = 'false';
const STATES = ['init', 'ready', 'sleeping', 'lost', 'disconnected'];

/** `[a-zA-Z0-9_-]`: what Home Assistant accepts in node_id and object_id (Homie ids have no `_`, so `_` separates). */
export function objectId(...parts: string[]): string {
  return parts.join('_');
}

export function discoveryTopic(prefix: string, component: HaComponent, nodeId: string, object: string): string {
  return `${prefix}/${component}/${nodeId}/${object}/config`;
}

/**
 * The subscription that finds every config under one node_id (any component): a gateway's own,
 * and those of a board it is configured with. Under the gateway id are also the board configs
 * earlier tether versions named by gateway (`<gateway>/<board>_<entity>`), now stale.
 */
export function ownDiscoveryTopics(prefix: string, nodeId: string): string {
  return `${prefix}/+/${nodeId}/+/config`;
}

const gatewayIdentifier = (gatewayId: string) => `tether_${gatewayId}`;
const boardIdentifier = (deviceId: string) => `tether_${deviceId}`;

function origin(ctx: DiscoveryContext): Record<string, unknown> {
  return { name: 'tether', sw_version: ctx.tetherVersion };
}

/** The gateway as a Home Assistant device with one entity (a device without entities is not shown). */
export function gatewayDiscovery(ctx: DiscoveryContext): DiscoveryMessage[] {
  const id = objectId(ctx.gatewayId, 'connectivity');
  return [
    {
      topic: discoveryTopic(ctx.prefix, 'binary_sensor', ctx.gatewayId, id),
      config: {
        name: 'Daemon running',
        unique_id: objectId('tether', ctx.gatewayId, 'connectivity'),
        device_class: 'connectivity',
        entity_category: 'diagnostic',
        state_topic: homieTopics.state(ctx.gatewayId),
        value_template: oneOfTemplate(GATEWAY_AVAILABLE_STATES, 'ON', 'OFF'),
        payload_on: 'ON',
        payload_off: 'OFF',
        qos: 1,
        // No availability: the gateway's Last Will (`lost`) shows as OFF, which is the point.
        device: {
          identifiers: [gatewayIdentifier(ctx.gatewayId)],
          name: ctx.gatewayName,
          manufacturer: 'tether',
          model: 'tether gateway',
          sw_version: ctx.tetherVersion,
        },
        origin: origin(ctx),
      },
    },
  ];
}

function boardDevice(ctx: DiscoveryContext, board: BoardDescription): Record<string, unknown> {
  const device: Record<string, unknown> = {
    identifiers: [boardIdentifier(board.id)],
    name: board.name,
    manufacturer: board.board === 'espruino' ? 'Espruino' : 'Arduino',
    model: board.board === 'espruino' ? espruinoModel(board.firmware) : 'Uno (ATmega328P)',
    via_device: gatewayIdentifier(ctx.gatewayId),
  };
  if (board.firmware) device.sw_version = `${board.firmware.name} ${board.firmware.fwMajor}.${board.firmware.fwMinor}`;
  return device;
}

/** The Espruino module says `tether-espruino <BOARD>` in HELLO. */
function espruinoModel(firmware: FirmwareFacts | null): string {
  const board = firmware?.name.replace(/^tether-espruino\s*/, '').trim();
  return board ? `Espruino ${board}` : 'Espruino';
}

/** Every entity of one board: one per component property, plus the keepalive (diagnostic) entities. */
export function boardDiscovery(ctx: DiscoveryContext, board: BoardDescription): DiscoveryMessage[] {
  const device = boardDevice(ctx, board);
  const out: DiscoveryMessage[] = [];
  boardEntities(ctx, board, (topic, object, config) => {
    out.push({ topic, config: { ...config(), unique_id: objectId('tether', object), device, origin: origin(ctx) } });
  });
  return out;
}

/**
 * The config topics of boardDiscovery(), without building the configs (the daemon's start
 * wants only the topics of every board: at 9,900 boards the configs were 128 MiB of garbage).
 */
export function boardDiscoveryTopics(ctx: DiscoveryContext, board: BoardDescription): string[] {
  const out: string[] = [];
  boardEntities(ctx, board, (topic) => out.push(topic));
  return out;
}

/** Hands each entity of a board to `put`: its config topic, object id, and its config to build when wanted. */
function boardEntities(
  ctx: DiscoveryContext,
  board: BoardDescription,
  entity: (topic: string, object: string, config: () => Record<string, unknown>) => void,
): void {
  const put = (component: HaComponent, parts: string[], config: () => Record<string, unknown>) => {
    const object = objectId(board.id, ...parts);
    entity(discoveryTopic(ctx.prefix, component, board.id, object), object, config);
  };
  const boardLive = () => boardAvailability(ctx.gatewayId, board.id);
  const daemonLive = () => gatewayAvailability(ctx.gatewayId);

  for (const component of board.components) {
    const properties = Object.entries(component.node.properties);
    for (const [propertyId, property] of properties) {
      const config = () => {
        const name = properties.length === 1 ? component.node.name : `${component.node.name} ${property.name}`;
        const state = homieTopics.property(board.id, component.id, propertyId);
        const topics = { name, state, command: homieTopics.set(board.id, component.id, propertyId) };
        return { ...componentConfig(ctx, component.node.type, property, topics), ...boardLive() };
      };
      put(entityComponent(ctx, component.node.type, property), [component.id, propertyId], config);
    }
  }

  // Keepalive: connectivity and state are what the daemon knows of the board, so they stay
  // available (showing `lost`) while the daemon runs; only the heartbeat needs the board up.
  const tether = (property: string) => homieTopics.property(board.id, 'tether', property);
  const fact = (property: string): HomieProperty => keepaliveNode.properties[property]!;
  const diagnostic = { entity_category: 'diagnostic', qos: 1 };
  put('binary_sensor', ['connectivity'], () => ({
    name: 'Connectivity',
    device_class: 'connectivity',
    state_topic: homieTopics.state(board.id),
    value_template: oneOfTemplate(BOARD_AVAILABLE_STATES, 'ON', 'OFF'),
    payload_on: 'ON',
    payload_off: 'OFF',
    ...diagnostic,
    ...daemonLive(),
  }));
  put('sensor', ['state'], () => ({ name: 'State', device_class: 'enum', options: STATES, state_topic: homieTopics.state(board.id), ...diagnostic, ...daemonLive() }));
  put('sensor', ['tether', 'rtt'], () => ({
    name: fact('rtt').name,
    state_topic: tether('rtt'),
    device_class: 'duration',
    unit_of_measurement: 'ms',
    state_class: 'measurement',
    suggested_display_precision: 1,
    ...diagnostic,
    ...boardLive(),
  }));
  put('sensor', ['tether', 'last-seen'], () => ({ name: fact('last-seen').name, state_topic: tether('last-seen'), device_class: 'timestamp', ...diagnostic, ...daemonLive() }));
  put('sensor', ['tether', 'reboots'], () => ({ name: fact('reboots').name, state_topic: tether('reboots'), state_class: 'total_increasing', ...diagnostic, ...daemonLive() }));
  put('sensor', ['tether', 'reset-cause'], () => ({
    name: fact('reset-cause').name,
    state_topic: tether('reset-cause'),
    device_class: 'enum',
    options: (fact('reset-cause').format ?? '').split(','),
    ...diagnostic,
    ...daemonLive(),
  }));
  put('sensor', ['tether', 'asleep-time'], () => ({
    name: fact('asleep-time').name,
    state_topic: tether('asleep-time'),
    device_class: 'duration',
    unit_of_measurement: 's',
    state_class: 'total_increasing',
    ...diagnostic,
    ...daemonLive(),
  }));
  put('sensor', ['tether', 'boot-id'], () => ({ name: fact('boot-id').name, state_topic: tether('boot-id'), enabled_by_default: false, ...diagnostic, ...daemonLive() }));
}

/** What one Homie property is in Home Assistant: settable booleans (with commands on) are lights (LEDs) or switches. */
function entityComponent(ctx: DiscoveryContext, nodeType: string | undefined, property: HomieProperty): HaComponent {
  if (property.datatype !== 'boolean') return 'sensor';
  if (property.settable && ctx.commands) return nodeType === 'led' ? 'light' : 'switch';
  return 'binary_sensor';
}

/** How one Homie property looks in Home Assistant (its entityComponent()'s config). */
function componentConfig(
  ctx: DiscoveryContext,
  nodeType: string | undefined,
  property: HomieProperty,
  topics: { name: string; state: string; command: string },
): Record<string, unknown> {
  const base = { name: topics.name, state_topic: topics.state, qos: 1 };
  if (property.datatype === 'boolean') {
    const onOff = { payload_on: HOMIE_TRUE, payload_off: HOMIE_FALSE };
    // Commands are Homie /set payloads (`true`/`false`), never retained (a retained /set is ignored anyway).
    if (entityComponent(ctx, nodeType, property) !== 'binary_sensor') return { ...base, command_topic: topics.command, ...onOff, retain: false, optimistic: false };
    return { ...base, ...onOff };
  }
  if (property.datatype === 'integer' || property.datatype === 'float') {
    return { ...base, state_class: 'measurement', ...(property.unit ? { unit_of_measurement: property.unit } : {}) };
  }
  if (property.datatype === 'enum') return { ...base, device_class: 'enum', options: (property.format ?? '').split(',') };
  return base;
}
