import { z } from 'zod';
import { parseTarget } from '../transport/create-transport.ts';
import { WATCHDOG_STEPS_MS } from '../../shared/protocol/constants.ts';

/** Homie 5 ids: lowercase letters, digits and hyphens, not starting with a hyphen. */
const homieId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]*$/, 'an id of lowercase letters, digits and hyphens (Homie 5), not starting with a hyphen')
  .max(64);

const ms = (min: number, max: number) => z.number().int().min(min).max(max);

/** Arduino Uno pins: 2-13 digital (0/1 carry the serial link), A0-A5 analog (or 14-19). */
const digitalPin = z.union([z.number().int().min(2).max(19), z.string().regex(/^A[0-5]$/, 'A0-A5')]);
const analogPin = z.union([z.string().regex(/^A[0-5]$/, 'A0-A5'), z.number().int().min(14).max(19)]);

const componentBase = { id: homieId, name: z.string().min(1).max(64).optional() };

export const ledSchema = z.strictObject({ type: z.literal('led'), ...componentBase, pin: digitalPin });
export const relaySchema = z.strictObject({
  type: z.literal('relay'),
  ...componentBase,
  pin: digitalPin,
  /** NO: closed drives the pin high; NC: closed drives it low. */
  normally: z.enum(['open', 'closed']).default('open'),
});
export const buttonSchema = z.strictObject({
  type: z.literal('button'),
  ...componentBase,
  pin: digitalPin,
  pullup: z.boolean().default(false),
  invert: z.boolean().default(false),
});
export const sensorSchema = z.strictObject({
  type: z.literal('sensor'),
  ...componentBase,
  pin: analogPin,
  /** How often Johnny-Five reads it (ms). */
  freq: ms(1, 60_000).default(250),
  /** Publish only changes of at least this much (raw 0-1023 units). */
  threshold: z.number().int().min(0).max(1023).default(1),
});

export const componentSchema = z.discriminatedUnion('type', [ledSchema, relaySchema, buttonSchema, sensorSchema]);

const deviceConfigSchema = z.strictObject({
  watchdogMs: z
    .number()
    .int()
    .refine((v) => v === 0 || (WATCHDOG_STEPS_MS as readonly number[]).includes(v), {
      message: `one of 0 (off), ${WATCHDOG_STEPS_MS.join(', ')}`,
    })
    .default(2000),
  policy: z.enum(['stay', 'sleep', 'reset']).default('stay'),
  hostTimeoutMs: ms(0, 0xffffffff).default(0),
  sleepMs: ms(0, 0xffffffff).default(8000),
  awakeMs: ms(0, 0xffffffff).default(1000),
});

const keepaliveSchema = z.strictObject({
  intervalMs: ms(50, 600_000).default(1000),
  misses: z.number().int().min(1).max(100).default(3),
  detector: z.enum(['fixed', 'phi']).default('fixed'),
  phiThreshold: z.number().min(1).max(32).default(8),
  sleepGraceMs: ms(0, 600_000).default(2000),
  handshakeTimeoutMs: ms(100, 600_000).default(3000),
});

const portSchema = z
  .string()
  .min(1)
  .superRefine((value, ctx) => {
    try {
      parseTarget(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });

/** The serial rate tether's AVR firmware runs at. */
export const UNO_BAUD_RATE = 57600;
/** Espruino's default on its UARTs; a board on its own USB port ignores the rate. */
export const ESPRUINO_BAUD_RATE = 9600;

export const deviceSchema = z
  .strictObject({
    id: homieId,
    name: z.string().min(1).max(64).optional(),
    /**
     * uno: tether's AVR firmware (Firmata + keepalive); espruino: the keepalive module
     * (firmware/espruino/), frames carried over the Espruino REPL.
     */
    board: z.enum(['uno', 'espruino']).default('uno'),
    port: portSchema,
    /** Default: 57600 (uno), 9600 (espruino). */
    baudRate: z.number().int().min(300).max(2_000_000).optional(),
    /**
     * Serial ports only. true (default): closing the port drops DTR, so each reopen (a
     * reconnect, a daemon restart) resets an Arduino Uno. false: DTR stays up across close
     * and reopen (termios -hupcl), no reset after the first open since plugging it in.
     */
    hupcl: z.boolean().default(true),
    keepalive: keepaliveSchema.default(() => keepaliveSchema.parse({})),
    /** Written to the board's EEPROM at each handshake (CONFIG_SET) when given. */
    config: deviceConfigSchema.optional(),
    components: z.array(componentSchema).default([]),
  })
  .superRefine((device, ctx) => {
    if (!device.hupcl && /^tcp:\/\//i.test(device.port)) {
      ctx.addIssue({
        code: 'custom',
        path: ['hupcl'],
        message: 'hupcl applies to serial ports only: a tcp:// bridge holds the port itself (ser2net: set it in the bridge\'s serial options)',
      });
    }
    if (device.board === 'espruino' && device.components.length > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['components'],
        message:
          'an Espruino board runs no Firmata, so it cannot have Johnny-Five components: remove components (the keepalive, leases and state registers work without them) or use board: uno',
      });
    }
    const seenIds = new Map<string, number>();
    const seenPins = new Map<string, number>();
    device.components.forEach((c, i) => {
      if (c.id === 'tether') ctx.addIssue({ code: 'custom', path: ['components', i, 'id'], message: "'tether' is reserved for the keepalive node" });
      if (seenIds.has(c.id)) ctx.addIssue({ code: 'custom', path: ['components', i, 'id'], message: `duplicate component id (also components[${seenIds.get(c.id)}])` });
      seenIds.set(c.id, i);
      const pin = normalizePin(c.pin);
      if (seenPins.has(pin)) ctx.addIssue({ code: 'custom', path: ['components', i, 'pin'], message: `pin ${c.pin} is already used by components[${seenPins.get(pin)}]` });
      seenPins.set(pin, i);
    });
  })
  .transform((device) => ({ ...device, baudRate: device.baudRate ?? (device.board === 'espruino' ? ESPRUINO_BAUD_RATE : UNO_BAUD_RATE) }));

const tlsSchema = z.strictObject({
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
  rejectUnauthorized: z.boolean().default(true),
});

export const brokerSchema = z
  .strictObject({
    /** mqtt://, mqtts://, ws://, wss://. Omitted: an embedded broker is started. */
    url: z
      .string()
      .regex(/^(mqtts?|wss?):\/\/[^\s/]+/, 'a broker URL such as mqtt://host:1883 (mqtt, mqtts, ws or wss)')
      .optional(),
    /** Port of the embedded broker (when no url). */
    embeddedPort: z.number().int().min(0).max(65535).default(1883),
    keepaliveSec: z.number().int().min(1).max(65535).default(30),
    pingRespTimeoutMs: ms(100, 120_000).default(5000),
    protocolVersion: z.union([z.literal(5), z.literal(4)]).default(5),
    sessionExpirySec: z.number().int().min(0).max(0xffffffff).default(86400),
    username: z.string().optional(),
    /** Prefer passwordFile or the TETHER_BROKER_PASSWORD environment variable: a config file is often readable by many. */
    password: z.string().optional(),
    /** A file holding the password (surrounding whitespace ignored), read at start. */
    passwordFile: z.string().min(1).optional(),
    tls: tlsSchema.optional(),
    /** One connection for all devices (for brokers that limit connections): retained availability instead of per-device wills. */
    sharedSession: z.boolean().default(false),
    backoff: z
      .strictObject({ initialMs: ms(10, 600_000).default(250), maxMs: ms(100, 3_600_000).default(30_000) })
      .default({ initialMs: 250, maxMs: 30_000 }),
  })
  .refine((b) => b.password === undefined || b.username !== undefined, { message: 'password given without username', path: ['password'] })
  .refine((b) => b.passwordFile === undefined || b.username !== undefined, { message: 'passwordFile given without username', path: ['passwordFile'] })
  .refine((b) => b.password === undefined || b.passwordFile === undefined, { message: 'give password or passwordFile, not both', path: ['passwordFile'] });

export const configSchema = z
  .strictObject({
    gateway: z
      .strictObject({ id: homieId.default('tether-gateway'), name: z.string().min(1).max(64).default('tether gateway') })
      .default({ id: 'tether-gateway', name: 'tether gateway' }),
    broker: brokerSchema.default(() => brokerSchema.parse({})),
    queue: z
      .strictObject({
        dir: z.string().min(1).default('./tether-data'),
        maxEntries: z.number().int().min(10).max(10_000_000).default(10_000),
        maxBytes: z.number().int().min(1024).max(4 * 1024 ** 3).default(16 * 1024 * 1024),
      })
      .default({ dir: './tether-data', maxEntries: 10_000, maxBytes: 16 * 1024 * 1024 }),
    log: z
      .strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') })
      .default({ level: 'info' }),
    /** Extensions (host/extensions/): each can be switched off. */
    homie: z.strictObject({ enabled: z.boolean().default(true) }).default({ enabled: true }),
    /** Homie /set commands to components. */
    commands: z.strictObject({ enabled: z.boolean().default(true) }).default({ enabled: true }),
    /** The Prometheus endpoint: on when this section is given. */
    metrics: z
      .strictObject({ enabled: z.boolean().default(true), port: z.number().int().min(0).max(65535), host: z.string().default('127.0.0.1') })
      .optional(),
    /** The local control socket for `tether flash --daemon` (default: <queue.dir>/control.sock). */
    control: z
      .strictObject({ enabled: z.boolean().default(true), socket: z.string().min(1).max(100).optional() })
      .default({ enabled: true }),
    /** sd_notify READY/WATCHDOG/STOPPING when started by systemd (NOTIFY_SOCKET set). */
    systemd: z.strictObject({ enabled: z.boolean().default(true) }).default({ enabled: true }),
    devices: z.array(deviceSchema).min(1, 'at least one device'),
  })
  .superRefine((config, ctx) => {
    const ids = new Map<string, number>();
    const ports = new Map<string, number>();
    config.devices.forEach((d, i) => {
      if (d.id === config.gateway.id) ctx.addIssue({ code: 'custom', path: ['devices', i, 'id'], message: `same id as the gateway ('${d.id}')` });
      if (ids.has(d.id)) ctx.addIssue({ code: 'custom', path: ['devices', i, 'id'], message: `duplicate device id (also devices[${ids.get(d.id)}])` });
      ids.set(d.id, i);
      if (ports.has(d.port)) ctx.addIssue({ code: 'custom', path: ['devices', i, 'port'], message: `port already used by devices[${ports.get(d.port)}]` });
      ports.set(d.port, i);
    });
  });

export type TetherConfig = z.infer<typeof configSchema>;
export type DeviceSettings = z.infer<typeof deviceSchema>;
export type ComponentSettings = z.infer<typeof componentSchema>;
export type BrokerSettings = z.infer<typeof brokerSchema>;

/** 'A0' and 14 are the same pin. */
export function normalizePin(pin: number | string): string {
  if (typeof pin === 'string' && /^A[0-5]$/.test(pin)) return String(14 + Number(pin.slice(1)));
  return String(pin);
}
