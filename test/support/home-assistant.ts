import mqtt, { type MqttClient } from 'mqtt';
import { z } from 'zod';

/**
 * Home Assistant, as far as tether's discovery is concerned, modelled from its MQTT
 * documentation (home-assistant.io/integrations/mqtt, .../binary_sensor.mqtt, .../sensor.mqtt,
 * .../switch.mqtt, .../light.mqtt; developers.home-assistant.io for the sensor and binary
 * sensor device classes). Home Assistant cannot run here: nothing below was checked against a
 * running Home Assistant. Each rule names what it models.
 */

// ---- discovery topics ----------------------------------------------------------------------

/**
 * "<discovery_prefix>/<component>/[<node_id>/]<object_id>/config"; node_id and object_id
 * "must consist of characters from the character class [a-zA-Z0-9_-]".
 */
export function parseDiscoveryTopic(prefix: string, topic: string): { component: string; nodeId?: string; objectId: string; device: boolean } | null {
  if (!topic.startsWith(`${prefix}/`) || !topic.endsWith('/config')) return null;
  const parts = topic.slice(prefix.length + 1, -'/config'.length).split('/');
  const idOk = (s: string | undefined) => s !== undefined && /^[a-zA-Z0-9_-]+$/.test(s);
  if (parts.length === 2 && idOk(parts[1])) return { component: parts[0]!, objectId: parts[1]!, device: parts[0] === 'device' };
  if (parts.length === 3 && idOk(parts[1]) && idOk(parts[2])) return { component: parts[0]!, nodeId: parts[1], objectId: parts[2]!, device: false };
  return null;
}

// ---- config schemas ------------------------------------------------------------------------

/** A topic to publish to or to subscribe to exactly: no wildcards. */
const topicName = z.string().min(1).regex(/^[^#+]+$/, 'no wildcards in a state/command/availability topic');

/** "availability: A list of MQTT topics subscribed to receive availability (online/offline) updates." */
const availabilityEntry = z.strictObject({
  topic: topicName,
  payload_available: z.string().default('online'),
  payload_not_available: z.string().default('offline'),
  value_template: z.string().optional(),
});

/** "device: Information about the device this entity is a part of to tie it into the device registry." */
const deviceSchema = z
  .strictObject({
    configuration_url: z.string().optional(),
    connections: z.array(z.tuple([z.string(), z.string()])).optional(),
    hw_version: z.string().optional(),
    identifiers: z.union([z.string(), z.array(z.string()).min(1)]).optional(),
    manufacturer: z.string().optional(),
    model: z.string().optional(),
    model_id: z.string().optional(),
    name: z.string().optional(),
    serial_number: z.string().optional(),
    suggested_area: z.string().optional(),
    sw_version: z.string().optional(),
    via_device: z.string().optional(),
  })
  // "At least one of identifiers or connections must be present to identify the device."
  .refine((d) => d.identifiers !== undefined || d.connections !== undefined, 'device needs identifiers or connections');

/** "origin: ... name (Required), sw_version, support_url" (recommended with every discovery message). */
const originSchema = z.strictObject({ name: z.string().min(1), sw_version: z.string().optional(), support_url: z.string().optional() });

const entityCommon = {
  name: z.string().nullable().optional(),
  unique_id: z.string().min(1).optional(),
  object_id: z.string().optional(),
  default_entity_id: z.string().optional(),
  device: deviceSchema.optional(),
  origin: originSchema.optional(),
  availability: z.array(availabilityEntry).min(1).optional(),
  // "Valid entries are all, any, and latest" (default latest).
  availability_mode: z.enum(['all', 'any', 'latest']).default('latest'),
  availability_topic: topicName.optional(),
  availability_template: z.string().optional(),
  payload_available: z.string().optional(),
  payload_not_available: z.string().optional(),
  entity_category: z.enum(['config', 'diagnostic']).optional(),
  enabled_by_default: z.boolean().optional(),
  icon: z.string().optional(),
  entity_picture: z.string().optional(),
  json_attributes_topic: topicName.optional(),
  json_attributes_template: z.string().optional(),
  encoding: z.string().optional(),
  qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(0),
};

type Common = { availability?: unknown; availability_topic?: unknown; device?: unknown; unique_id?: unknown; entity_category?: string };

function commonRules<T extends Common>(schema: z.ZodType<T>, component: string): z.ZodType<T> {
  return schema
    .refine((c) => !(c.availability !== undefined && c.availability_topic !== undefined), {
      message: 'availability: "Must not be used together with availability_topic"',
    })
    .refine((c) => c.device === undefined || c.unique_id !== undefined, {
      message: 'device: "Only works when unique_id is set"',
    })
    .refine((c) => !(['sensor', 'binary_sensor'].includes(component) && c.entity_category === 'config'), {
      message: 'sensors cannot have entity_category config (only diagnostic)',
    });
}

/** developers.home-assistant.io: BinarySensorDeviceClass. */
const binarySensorClasses = [
  'battery', 'battery_charging', 'carbon_monoxide', 'cold', 'connectivity', 'door', 'garage_door', 'gas', 'heat', 'light',
  'lock', 'moisture', 'motion', 'moving', 'occupancy', 'opening', 'plug', 'power', 'presence', 'problem', 'running',
  'safety', 'smoke', 'sound', 'tamper', 'update', 'vibration', 'window',
] as const;

/** developers.home-assistant.io: SensorDeviceClass (those without a unit here, and duration's units). */
const sensorClasses = [
  'apparent_power', 'aqi', 'area', 'atmospheric_pressure', 'battery', 'blood_glucose_concentration', 'carbon_dioxide',
  'carbon_monoxide', 'conductivity', 'current', 'data_rate', 'data_size', 'date', 'distance', 'duration', 'energy',
  'energy_storage', 'enum', 'frequency', 'gas', 'humidity', 'illuminance', 'irradiance', 'moisture', 'monetary',
  'nitrogen_dioxide', 'nitrogen_monoxide', 'nitrous_oxide', 'ozone', 'ph', 'pm1', 'pm10', 'pm25', 'power', 'power_factor',
  'precipitation', 'precipitation_intensity', 'pressure', 'reactive_power', 'signal_strength', 'sound_pressure', 'speed',
  'sulphur_dioxide', 'temperature', 'timestamp', 'volatile_organic_compounds', 'volatile_organic_compounds_parts',
  'voltage', 'volume', 'volume_flow_rate', 'volume_storage', 'water', 'weight', 'wind_speed',
] as const;
const DURATION_UNITS = ['d', 'h', 'min', 's', 'ms'];

/** binary_sensor.mqtt: state_topic Required; payload_on default "ON", payload_off default "OFF". */
export const binarySensorConfig = commonRules(
  z.strictObject({
    ...entityCommon,
    state_topic: topicName,
    device_class: z.enum(binarySensorClasses).optional(),
    payload_on: z.string().default('ON'),
    payload_off: z.string().default('OFF'),
    value_template: z.string().optional(),
    expire_after: z.number().int().positive().optional(),
    force_update: z.boolean().optional(),
    off_delay: z.number().int().positive().optional(),
  }),
  'binary_sensor',
);

/** sensor.mqtt: state_topic Required; the device class, state class, unit and options rules. */
export const sensorConfig = commonRules(
  z
    .strictObject({
      ...entityCommon,
      state_topic: topicName,
      device_class: z.enum(sensorClasses).optional(),
      state_class: z.enum(['measurement', 'total', 'total_increasing']).optional(),
      unit_of_measurement: z.string().optional(),
      suggested_display_precision: z.number().int().min(0).optional(),
      options: z.array(z.string()).optional(),
      value_template: z.string().optional(),
      last_reset_value_template: z.string().optional(),
      expire_after: z.number().int().positive().optional(),
      force_update: z.boolean().optional(),
    })
    // options: "An empty list is not allowed. The sensor's device_class must be set to enum.
    // The options option cannot be used together with state_class or unit_of_measurement."
    .refine((c) => c.options === undefined || (c.options.length > 0 && c.device_class === 'enum' && c.state_class === undefined && c.unit_of_measurement === undefined), {
      message: 'options need device_class enum, at least one value, and no state_class or unit',
    })
    .refine((c) => c.device_class !== 'enum' || c.options !== undefined, { message: 'device_class enum needs options' })
    // A timestamp sensor's state is a datetime: no unit and no state class.
    .refine((c) => c.device_class !== 'timestamp' || (c.state_class === undefined && c.unit_of_measurement === undefined), {
      message: 'timestamp sensors take no state_class or unit',
    })
    .refine((c) => c.device_class !== 'duration' || (c.unit_of_measurement !== undefined && DURATION_UNITS.includes(c.unit_of_measurement)), {
      message: `duration sensors need a unit of ${DURATION_UNITS.join(', ')}`,
    }),
  'sensor',
);

/** switch.mqtt: command_topic Required; payload_on "ON" / payload_off "OFF", state_on/state_off default to them. */
export const switchConfig = commonRules(
  z.strictObject({
    ...entityCommon,
    command_topic: topicName,
    command_template: z.string().optional(),
    state_topic: topicName.optional(),
    device_class: z.enum(['outlet', 'switch']).optional(),
    payload_on: z.string().default('ON'),
    payload_off: z.string().default('OFF'),
    state_on: z.string().optional(),
    state_off: z.string().optional(),
    optimistic: z.boolean().optional(),
    retain: z.boolean().default(false),
    value_template: z.string().optional(),
  }),
  'switch',
);

/** light.mqtt, default (basic) schema: command_topic Required; on/off payloads as a switch's. */
export const lightConfig = commonRules(
  z.strictObject({
    ...entityCommon,
    schema: z.enum(['basic', 'default']).optional(),
    command_topic: topicName,
    state_topic: topicName.optional(),
    state_value_template: z.string().optional(),
    payload_on: z.string().default('ON'),
    payload_off: z.string().default('OFF'),
    on_command_type: z.enum(['last', 'first', 'brightness']).optional(),
    optimistic: z.boolean().optional(),
    retain: z.boolean().default(false),
    brightness_command_topic: topicName.optional(),
    brightness_state_topic: topicName.optional(),
    brightness_scale: z.number().int().positive().optional(),
  }),
  'light',
);

export const configSchemas: Record<string, z.ZodType> = {
  binary_sensor: binarySensorConfig,
  sensor: sensorConfig,
  switch: switchConfig,
  light: lightConfig,
};

/** Validates a discovery message; returns the parsed config (defaults applied) or throws with every problem. */
export function validateDiscovery(prefix: string, topic: string, payload: string): { component: string; config: EntityConfig } {
  const where = parseDiscoveryTopic(prefix, topic);
  if (!where) throw new Error(`not a discovery topic: ${topic}`);
  const schema = configSchemas[where.component];
  if (!schema) throw new Error(`component ${where.component} is not modelled here (${topic})`);
  const parsed = schema.safeParse(JSON.parse(payload));
  if (!parsed.success) throw new Error(`${topic}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return { component: where.component, config: parsed.data as EntityConfig };
}

export interface EntityConfig {
  name?: string | null;
  unique_id?: string;
  state_topic?: string;
  command_topic?: string;
  value_template?: string;
  payload_on?: string;
  payload_off?: string;
  availability?: Array<{ topic: string; payload_available: string; payload_not_available: string; value_template?: string }>;
  availability_mode: 'all' | 'any' | 'latest';
  availability_topic?: string;
  device?: { identifiers?: string | string[]; name?: string; manufacturer?: string; model?: string; sw_version?: string; via_device?: string };
  entity_category?: string;
  device_class?: string;
  qos: number;
  retain?: boolean;
  [key: string]: unknown;
}

// ---- templates -----------------------------------------------------------------------------

/**
 * Home Assistant renders `value_template` with Jinja, the payload as `value`. Only one shape of
 * template is modelled (the one tether uses): `{{ 'A' if value in ['x', 'y'] else 'B' }}`;
 * anything else throws, so a new template shape cannot pass unmodelled.
 */
export function renderTemplate(template: string, value: string): string {
  const m = /^\{\{ '([^']*)' if value in \[((?:'[^']*'(?:, )?)+)\] else '([^']*)' \}\}$/.exec(template);
  if (!m) throw new Error(`template shape not modelled: ${template}`);
  const list = [...m[2]!.matchAll(/'([^']*)'/g)].map((x) => x[1]);
  return list.includes(value) ? m[1]! : m[3]!;
}

// ---- availability --------------------------------------------------------------------------

/**
 * An entity's availability as Home Assistant computes it (MQTT integration, "availability" and
 * "availability_mode"): each availability topic starts unavailable; a payload (after
 * value_template) equal to payload_available makes that topic available, one equal to
 * payload_not_available unavailable, anything else changes nothing. `all`: available when every
 * topic is; `any`: when at least one is; `latest`: as the last matching payload on any topic
 * said. Without availability the entity is always available.
 */
export class EntityAvailability {
  private readonly byTopic = new Map<string, boolean>();
  private latest = false;

  constructor(readonly config: Pick<EntityConfig, 'availability' | 'availability_mode'>) {
    for (const a of config.availability ?? []) this.byTopic.set(a.topic, false);
  }

  get topics(): string[] {
    return [...this.byTopic.keys()];
  }

  onMessage(topic: string, payload: string): void {
    for (const a of this.config.availability ?? []) {
      if (a.topic !== topic) continue;
      const value = a.value_template ? renderTemplate(a.value_template, payload) : payload;
      if (value === a.payload_available) {
        this.byTopic.set(topic, true);
        this.latest = true;
      } else if (value === a.payload_not_available) {
        this.byTopic.set(topic, false);
        this.latest = false;
      }
    }
  }

  get available(): boolean {
    if (!this.config.availability) return true;
    const values = [...this.byTopic.values()];
    if (this.config.availability_mode === 'all') return values.every(Boolean);
    if (this.config.availability_mode === 'any') return values.some(Boolean);
    return this.latest;
  }
}

/** A binary sensor's state: the payload (after value_template) against payload_on/payload_off; others ignored. */
export function binaryState(config: EntityConfig, payload: string, previous: 'on' | 'off' | 'unknown'): 'on' | 'off' | 'unknown' {
  const value = config.value_template ? renderTemplate(config.value_template, payload) : payload;
  if (value === config.payload_on) return 'on';
  if (value === config.payload_off) return 'off';
  return previous;
}

// ---- a Home Assistant on a broker ------------------------------------------------------------

export interface ModelEntity {
  topic: string;
  component: string;
  config: EntityConfig;
  availability: EntityAvailability;
  /** The last payload on its state topic. */
  state?: string;
}

/**
 * What Home Assistant would hold: the entities from retained and live discovery messages
 * (validated against the schemas above; an invalid one is recorded in `invalid`, as Home
 * Assistant logs and skips it), an empty payload removing one, and for each entity its
 * availability from the messages on its availability topics, in arrival order.
 */
export class FakeHomeAssistant {
  readonly entities = new Map<string, ModelEntity>();
  readonly invalid: string[] = [];
  /** Discovery messages received per config topic (to see a rediscovery). */
  readonly configMessages = new Map<string, number>();
  readonly removed: string[] = [];
  /** Every message seen, in arrival order (for failure messages). */
  readonly history: Array<{ topic: string; payload: string; retain: boolean }> = [];
  /** Latest payload per topic seen on the watched trees (what a subscribe would hand back retained). */
  private readonly latest = new Map<string, string>();

  private constructor(
    readonly client: MqttClient,
    readonly prefix: string,
  ) {
    client.on('message', (topic, payload, packet) => {
      this.history.push({ topic, payload: payload.length > 60 ? `${payload.toString().slice(0, 60)}...` : payload.toString(), retain: packet.retain });
      this.onMessage(topic, payload.toString());
    });
  }

  static async connect(url: string, options: { prefix?: string; watch?: string[] } = {}): Promise<FakeHomeAssistant> {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 200, connectTimeout: 3000, clientId: `fake-ha-${process.pid}-${Math.random().toString(16).slice(2, 8)}` });
    const ha = new FakeHomeAssistant(client, options.prefix ?? 'homeassistant');
    await client.subscribeAsync([`${ha.prefix}/#`, ...(options.watch ?? ['homie/5/#'])], { qos: 1 });
    return ha;
  }

  /** Home Assistant's birth message (its default: `online` on homeassistant/status, not retained). */
  async birth(topic = 'homeassistant/status'): Promise<void> {
    await this.client.publishAsync(topic, 'online', { qos: 1 });
  }

  /** What a user of Home Assistant does to switch an entity: payload_on/payload_off to its command topic. */
  async command(entity: ModelEntity, on: boolean | string): Promise<void> {
    const payload = typeof on === 'string' ? on : on ? entity.config.payload_on! : entity.config.payload_off!;
    await this.client.publishAsync(entity.config.command_topic!, payload, { qos: entity.config.qos as 0 | 1, retain: entity.config.retain ?? false });
  }

  byUniqueId(uniqueId: string): ModelEntity {
    for (const e of this.entities.values()) if (e.config.unique_id === uniqueId) return e;
    throw new Error(`no entity ${uniqueId}; have ${[...this.entities.values()].map((e) => e.config.unique_id).join(', ')}`);
  }

  /** Entities of a Home Assistant device (by one of its identifiers). */
  ofDevice(identifier: string): ModelEntity[] {
    return [...this.entities.values()].filter((e) => {
      const ids = e.config.device?.identifiers;
      return Array.isArray(ids) ? ids.includes(identifier) : ids === identifier;
    });
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }

  private onMessage(topic: string, payload: string): void {
    if (parseDiscoveryTopic(this.prefix, topic)) {
      this.configMessages.set(topic, (this.configMessages.get(topic) ?? 0) + 1);
      if (payload === '') {
        if (this.entities.delete(topic)) this.removed.push(topic);
        return;
      }
      try {
        const { component, config } = validateDiscovery(this.prefix, topic, payload);
        const availability = new EntityAvailability(config);
        const entity: ModelEntity = { topic, component, config, availability };
        // Home Assistant subscribes to the entity's topics now: retained values arrive first.
        for (const t of availability.topics) {
          const last = this.latest.get(t);
          if (last !== undefined) availability.onMessage(t, last);
        }
        if (config.state_topic) entity.state = this.latest.get(config.state_topic);
        this.entities.set(topic, entity);
      } catch (err) {
        this.invalid.push((err as Error).message);
      }
      return;
    }
    if (payload === '') this.latest.delete(topic);
    else this.latest.set(topic, payload);
    for (const entity of this.entities.values()) {
      entity.availability.onMessage(topic, payload);
      if (entity.config.state_topic === topic) entity.state = payload;
    }
  }
}
