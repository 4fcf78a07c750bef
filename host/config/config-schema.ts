import { z } from 'zod';
import { parseTarget } from '../transport/create-transport.ts';
import { WATCHDOG_STEPS_MS } from '../../shared/protocol/constants.ts';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS } from '../session/device-session.ts';

/** Homie 5 ids: lowercase letters, digits and hyphens, not starting with a hyphen. */
const homieId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]*$/, 'an id of lowercase letters, digits and hyphens (Homie 5), not starting with a hyphen')
  .max(64);

/** An MQTT topic to publish under or subscribe to exactly: no wildcards, no empty levels. */
const mqttTopicName = z
  .string()
  .max(200)
  .regex(/^[^/#+\s]+(\/[^/#+\s]+)*$/, 'a topic such as homeassistant (no wildcards, no empty levels, no spaces)');

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
  handshakeTimeoutMs: ms(100, 600_000).default(DEFAULT_HANDSHAKE_TIMEOUT_MS),
  /**
   * A board that can send its own heartbeat (its HELLO has the beats capability: tether's
   * firmware and Espruino module) is asked to, every intervalMs, and PINGed only every 30
   * intervals to renew that (a PING every interval while a keep-awake lease is held). false:
   * a PING every interval, as for any board.
   */
  beats: z.boolean().default(true),
  /**
   * tcp:// bridges: a PING after this much silence on the link, below the path's idle timeout
   * (learned from the link's cuts and kept in queue.dir), whatever intervalMs is; intervalMs
   * stays the detection bound.
   */
  keepTraffic: z
    .strictObject({
      learn: z.boolean().default(true),
      /** A fixed interval (ms) instead of learning. */
      intervalMs: ms(100, 600_000).optional(),
      /** The shortest interval learning may choose (ms). */
      minIntervalMs: ms(100, 600_000).default(2000),
    })
    .default({ learn: true, minIntervalMs: 2000 }),
});

/**
 * Kernel keepalive and TCP_USER_TIMEOUT for a TCP socket (a tcp:// bridge, the broker).
 * Each field left out is derived from the connection's own bound (tcpKeepaliveForBound):
 * the user timeout is the bound after which the peer is declared gone; probes start after
 * half an interval of silence. userTimeoutMs 0 leaves the kernel's (~15 min).
 */
const tcpSocketSchema = z.strictObject({
  keepAliveIdleMs: ms(1000, 32_767_000).optional(),
  keepAliveIntervalMs: ms(1000, 32_767_000).optional(),
  keepAliveCount: z.number().int().min(1).max(127).optional(),
  userTimeoutMs: ms(0, 0x7fffffff).optional(),
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
    /**
     * tcp:// bridges: socket options (see tcpSocketSchema), and whether a board `lost` with
     * the connection still open gets a fresh connection (default: yes for tcp://, no for a
     * serial port, where reopening resets an Uno).
     */
    tcp: tcpSocketSchema.extend({ reopenOnLost: z.boolean().optional() }).default({}),
    /** Written to the board's EEPROM at each handshake (CONFIG_SET) when given. */
    config: deviceConfigSchema.optional(),
    components: z.array(componentSchema).default([]),
    /**
     * More than one gateway (README "More than one gateway"): true makes this gateway a
     * standby for the board: it leaves the port closed and takes the board only once the
     * gateway holding it is gone (its Will said `lost`, or it stopped) and stayed gone for
     * `takeoverDelayMs`.
     */
    standby: z.boolean().default(false),
    /** How long a board's owner must stay gone before this gateway takes the board (ms). */
    takeoverDelayMs: ms(0, 600_000).default(3000),
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

const brokerUrl = z.string().regex(/^(mqtts?|wss?):\/\/[^\s/]+/, 'a broker URL such as mqtt://host:1883 (mqtt, mqtts, ws or wss)');

export const brokerSchema = z
  .strictObject({
    /** mqtt://, mqtts://, ws://, wss://. Omitted (and no urls): an embedded broker is started. */
    url: brokerUrl.optional(),
    /**
     * Several URLs (the nodes of a clustered broker), instead of url: each session tries them in
     * turn, moving to the next after a failed attempt or the loss of its connection (with the
     * backoff below). They share the credentials and TLS settings. After parsing, `url` is the first.
     */
    urls: z.array(brokerUrl).min(1).max(64).optional(),
    /** Port of the embedded broker (when no url). */
    embeddedPort: z.number().int().min(0).max(65535).default(1883),
    keepaliveSec: z.number().int().min(1).max(65535).default(30),
    pingRespTimeoutMs: ms(100, 120_000).default(5000),
    /** 'auto': MQTT 5, and 3.1.1 when the broker refuses 5 (RabbitMQ 3.x, Aedes), logged once. 5 or 4 (3.1.1): that one only. */
    protocolVersion: z.union([z.literal(5), z.literal(4), z.literal('auto')]).default('auto'),
    sessionExpirySec: z.number().int().min(0).max(0xffffffff).default(86400),
    /**
     * MQTT 5 Will Delay Interval: a session cut and taken over again (reconnected) within this
     * many seconds publishes no Last Will, so subscribers see no `lost` for a cut that heals.
     * 0: the will goes at once. Ignored on MQTT 3.1.1.
     */
    willDelaySec: z.number().int().min(0).max(86_400).default(5),
    /**
     * PINGREQ traffic that keeps the middleboxes on the path (NAT, proxies, load balancers)
     * awake, independently of keepaliveSec: learned per path by default (see the README,
     * "Behind NAT, proxies and load balancers"), or a fixed interval.
     */
    keepaliveTraffic: z
      .strictObject({
        /** Learn the path's idle timeout and ping below it (a probe connection searches; kept under queue.dir). */
        learn: z.boolean().default(true),
        /** A fixed PINGREQ interval (s) instead; learning is then off. */
        intervalSec: z.number().min(1).max(65535).optional(),
        /** The shortest interval learning may choose (s). */
        minIntervalSec: z.number().min(0.5).max(3600).default(2),
      })
      .default({ learn: true, minIntervalSec: 2 }),
    username: z.string().optional(),
    /** Prefer passwordFile or the TETHER_BROKER_PASSWORD environment variable: a config file is often readable by many. */
    password: z.string().optional(),
    /** A file holding the password (surrounding whitespace ignored), read at start. */
    passwordFile: z.string().min(1).optional(),
    tls: tlsSchema.optional(),
    /** Socket options of the broker connection (see tcpSocketSchema); derived from keepaliveSec + pingRespTimeoutMs. */
    tcp: tcpSocketSchema.default({}),
    /**
     * ws:// and wss:// only: a WebSocket ping this often (seconds), so proxies that count only
     * WebSocket traffic see some. Default: half of keepaliveSec; 0: none.
     */
    websocketPingSec: z.number().int().min(0).max(65535).optional(),
    /** One connection for all devices (for brokers that limit connections): retained availability instead of per-device wills. */
    sharedSession: z.boolean().default(false),
    backoff: z
      .strictObject({ initialMs: ms(10, 600_000).default(250), maxMs: ms(100, 3_600_000).default(30_000) })
      .default({ initialMs: 250, maxMs: 30_000 }),
  })
  .refine((b) => b.password === undefined || b.username !== undefined, { message: 'password given without username', path: ['password'] })
  .refine((b) => b.passwordFile === undefined || b.username !== undefined, { message: 'passwordFile given without username', path: ['passwordFile'] })
  .refine((b) => b.password === undefined || b.passwordFile === undefined, { message: 'give password or passwordFile, not both', path: ['passwordFile'] })
  .refine((b) => b.url === undefined || b.urls === undefined, { message: 'give url or urls, not both', path: ['urls'] })
  // One shape for the code: `urls` every URL (none: the embedded broker), `url` the first.
  .transform((b) => {
    const urls = b.urls ?? (b.url !== undefined ? [b.url] : []);
    return { ...b, url: urls[0], urls };
  });

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
        /**
         * When the outbox journals are synced to the disk: `always` (every write, before it
         * counts as stored: survives power loss), `{ batchMs: N }` (within N ms: a power loss
         * may lose the last N ms), `never` (the kernel decides: survives a crash of the
         * daemon, not a power loss). See the README's outbox paragraph.
         */
        fsync: z
          .union([z.enum(['always', 'never']), z.strictObject({ batchMs: z.number().int().min(1).max(60_000) })])
          .default('always'),
      })
      .default({ dir: './tether-data', maxEntries: 10_000, maxBytes: 16 * 1024 * 1024, fsync: 'always' }),
    log: z
      .strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') })
      .default({ level: 'info' }),
    /** Extensions (host/extensions/): each can be switched off. */
    homie: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** Keepalive facts go out when they change; RTT and last-seen also at least this often (s). */
        factsRefreshSec: z.number().int().min(5).max(86_400).default(300),
      })
      .default({ enabled: true, factsRefreshSec: 300 }),
    /** Homie /set commands to components. */
    commands: z.strictObject({ enabled: z.boolean().default(true) }).default({ enabled: true }),
    /**
     * Home Assistant MQTT discovery (host/homeassistant/): a Home Assistant device per board and
     * for the gateway, entities pointing at the Homie topics. `prefix` is Home Assistant's
     * discovery_prefix; its birth message on `statusTopic` makes the daemon send discovery again.
     * Its entities point at the Homie topics: with `homie: { enabled: false }` it is off too.
     */
    homeassistant: z
      .strictObject({
        enabled: z.boolean().default(true),
        prefix: mqttTopicName.default('homeassistant'),
        statusTopic: mqttTopicName.default('homeassistant/status'),
      })
      .default({ enabled: true, prefix: 'homeassistant', statusTopic: 'homeassistant/status' }),
    /** The Prometheus endpoint: on when this section is given. */
    metrics: z
      .strictObject({ enabled: z.boolean().default(true), port: z.number().int().min(0).max(65535), host: z.string().default('127.0.0.1') })
      .optional(),
    /**
     * The live status page (host/status-page/): on when this section is given, like metrics;
     * loopback unless `bind` says otherwise; read-only.
     */
    http: z
      .strictObject({
        enabled: z.boolean().default(true),
        port: z.number().int().min(0).max(65535).default(8090),
        bind: z.string().min(1).default('127.0.0.1'),
        /** A heartbeat on the page's event stream this often (s): below the idle timeouts of proxies (nginx 60 s, cloud load balancers 60 s, and 15 s in the tests of issue 14). */
        heartbeatSec: z.number().int().min(1).max(300).default(10),
      })
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
    if (config.broker.sharedSession) {
      const standby = config.devices.findIndex((d) => d.standby);
      if (standby >= 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['devices', standby, 'standby'],
          message: "standby needs a session per board (its client id is the lock between gateways): remove broker.sharedSession or standby",
        });
      }
    }
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
