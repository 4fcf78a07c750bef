import { join } from 'node:path';
import five from 'johnny-five';
import type { BrokerSettings, DeviceSettings } from '../config/config-schema.ts';
import { createComponent } from '../components/create-component.ts';
import type { DeviceComponent, PublishKind } from '../components/device-component.ts';
import { describeDevice, keepaliveNode, type HomieDescription } from '../homie/homie-description.ts';
import { homieTopics, parseSetTopic, type HomieState } from '../homie/homie-topics.ts';
import { parseSetPayload } from '../homie/set-payload.ts';
import type { Logger } from '../log/logger.ts';
import { BrokerSession } from '../mqtt/broker-session.ts';
import { DurableOutbox, type OutboxKind } from '../mqtt/durable-outbox.ts';
import { OutboxPump } from '../mqtt/outbox-pump.ts';
import type { RebootInfo, StateChange } from '../session/device-session.ts';
import { PhiAccrualDetector } from '../session/phi-accrual-detector.ts';
import { TetherIO } from '../tether-io/tether-io.ts';
import { DeviceLink, type DeviceLinkOptions } from '../link/device-link.ts';
import { EspruinoReplTransport } from '../espruino/espruino-repl-transport.ts';
import { BOARDS } from '../flash/boards.ts';
import { FlashError } from '../flash/errors.ts';
import type { FirmwareImage } from '../flash/firmware-image.ts';
import { flashSerialPort, type FlashSerialPortResult } from '../flash/flash-serial-port.ts';
import type { FlashProgress } from '../flash/program-firmware.ts';
import { createTransport, parseTarget } from '../transport/create-transport.ts';

export interface DeviceBridgeOptions {
  settings: DeviceSettings;
  gatewayId: string;
  brokerUrl: string;
  broker: BrokerSettings;
  queue: { dir: string; maxEntries: number; maxBytes: number };
  logger: Logger;
  /** Shared-session mode: publish and subscribe through the gateway's connection. */
  sharedSession?: BrokerSession;
  /** How often RTT and last-seen are refreshed on the broker (default 5000 ms). */
  keepalivePublishMs?: number;
}

export interface DeviceBridgeCounters {
  setsApplied: number;
  setsRejected: number;
}

/**
 * One board on the broker: its link (through TetherIO and Johnny-Five components on an Uno; a
 * plain DeviceLink over the REPL framing on an Espruino board), its Homie 5 device
 * (description, $state, property values), its own MQTT session whose Last Will marks it
 * lost, and a durable outbox so nothing it publishes is lost while the broker is away.
 */
export class DeviceBridge {
  readonly id: string;
  /** The keepalive session with the board (the same for both board families). */
  readonly link: DeviceLink;
  /** Firmata for Johnny-Five: Uno only (an Espruino board runs no Firmata). */
  readonly io: TetherIO | null;
  /** Johnny-Five, only when the device has components (a heartbeat-only fleet needs none). */
  readonly board: five.Board | null;
  readonly components: DeviceComponent[];
  readonly description: HomieDescription;
  readonly counters: DeviceBridgeCounters = { setsApplied: 0, setsRejected: 0 };
  private state: HomieState = 'init';
  private readonly log: Logger;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private readonly ownsSession: boolean;
  /** After stop(): Johnny-Five keeps its component timers, so late values are ignored. */
  private stopped = false;
  private flashing = false;

  private constructor(
    readonly options: DeviceBridgeOptions,
    readonly session: BrokerSession,
    readonly outbox: DurableOutbox,
    readonly pump: OutboxPump,
  ) {
    const { settings } = options;
    this.id = settings.id;
    this.log = options.logger.child({ device: settings.id });
    this.ownsSession = !options.sharedSession;
    this.components = settings.components.map(createComponent);
    this.description = describeDevice({
      name: settings.name ?? settings.id,
      type: settings.board === 'espruino' ? 'tether-espruino' : 'tether-uno',
      root: options.gatewayId,
      parent: options.gatewayId,
      nodes: Object.fromEntries([...this.components.map((c) => [c.id, c.node] as const), ['tether', keepaliveNode] as const]),
    });
    const k = settings.keepalive;
    const sessionOptions: DeviceLinkOptions['session'] = {
      pingIntervalMs: k.intervalMs,
      misses: k.misses,
      sleepGraceMs: k.sleepGraceMs,
      handshakeTimeoutMs: k.handshakeTimeoutMs,
      deviceConfig: settings.config,
      detector: k.detector === 'phi' ? new PhiAccrualDetector({ intervalMs: k.intervalMs, misses: k.misses, threshold: k.phiThreshold }) : undefined,
    };
    if (settings.board === 'espruino') {
      // The same session; only the framing differs: frames ride the REPL (espruino-repl-transport.ts).
      const portLog = this.log.child({ port: settings.port });
      this.io = null;
      this.link = new DeviceLink({
        target: settings.port,
        baudRate: settings.baudRate,
        logger: this.log,
        session: sessionOptions,
        transportFactory: () =>
          new EspruinoReplTransport(createTransport(settings.port, { baudRate: settings.baudRate, logger: portLog }), {
            onConsole: (text) => portLog.debug({ text }, 'Espruino console output'),
          }),
      });
    } else {
      this.io = new TetherIO({ port: settings.port, baudRate: settings.baudRate, logger: this.log, session: sessionOptions });
      this.link = this.io.link;
    }
    this.board = this.components.length === 0 || !this.io ? null : new five.Board({ io: this.io, repl: false, debug: false, timeout: 2_147_483_647 });
    const board = this.board;
    board?.on('ready', () => {
      for (const component of this.components) {
        component.attach({ board, publish: (property, value, kind) => this.publishProperty(component.id, property, value, kind) });
      }
    });
    this.link.on('state', (change: StateChange) => this.onLinkState(change));
    this.link.on('reboot', (info: RebootInfo) => this.publishKeepalive(info));
    // TetherIO starts its link itself (firmata.js must see the port open first).
    if (!this.io) this.link.start();
    session.on('up', () => this.onBrokerUp());
    session.on('message', (topic, payload) => this.onMessage(topic, payload));
  }

  static async create(options: DeviceBridgeOptions): Promise<DeviceBridge> {
    const { settings, broker } = options;
    const log = options.logger.child({ device: settings.id });
    const outbox = await DurableOutbox.open(join(options.queue.dir, `${settings.id}.outbox`), {
      maxEntries: options.queue.maxEntries,
      maxBytes: options.queue.maxBytes,
      logger: log,
    });
    const session =
      options.sharedSession ??
      new BrokerSession({
        url: options.brokerUrl,
        clientId: `tether-${options.gatewayId}-${settings.id}`,
        keepaliveSec: broker.keepaliveSec,
        pingRespTimeoutMs: broker.pingRespTimeoutMs,
        will: { topic: homieTopics.state(settings.id), payload: 'lost', qos: 1, retain: true },
        protocolVersion: broker.protocolVersion,
        sessionExpirySec: broker.sessionExpirySec,
        username: broker.username,
        password: broker.password,
        tls: broker.tls,
        backoff: broker.backoff,
        subscriptions: [{ topic: homieTopics.allSets(settings.id), qos: 1 }],
        logger: log,
      });
    const pump = new OutboxPump(outbox, session, { logger: log });
    return new DeviceBridge(options, session, outbox, pump);
  }

  start(): void {
    this.enqueue(homieTopics.state(this.id), 'init', 'state');
    this.enqueue(homieTopics.description(this.id), JSON.stringify(this.description), 'state');
    if (this.options.sharedSession) void this.options.sharedSession.subscribe(homieTopics.allSets(this.id), 1);
    else this.session.start();
    this.pump.start();
    this.keepaliveTimer = setInterval(() => this.publishKeepalive(), this.options.keepalivePublishMs ?? 5000);
  }

  get homieState(): HomieState {
    return this.state;
  }

  /**
   * Leaves on purpose: `$state` disconnected, the queue flushed (up to `flushTimeoutMs`),
   * a clean DISCONNECT (so the broker does not send the will), the port closed.
   */
  async stop(flushTimeoutMs = 3000): Promise<void> {
    clearInterval(this.keepaliveTimer);
    this.state = 'disconnected';
    this.enqueue(homieTopics.state(this.id), 'disconnected', 'state');
    this.stopped = true;
    await Promise.race([this.pump.flushed(), new Promise((r) => setTimeout(r, flushTimeoutMs).unref())]);
    await this.pump.stop();
    if (this.ownsSession) await this.session.stop();
    if (this.io) await this.io.close();
    else await this.link.close();
    await this.outbox.close();
  }

  /**
   * Flashes new firmware while the daemon owns the board: a "flashing" lease (a sleeping
   * board is woken first), `$state` init, the link paused and the port lent to the flasher,
   * then the link resumes: handshake, replay or verify of the recorded state, `ready`.
   */
  async flash(image: FirmwareImage, onProgress?: (p: FlashProgress) => void): Promise<FlashSerialPortResult> {
    const target = parseTarget(this.options.settings.port);
    if (target.kind !== 'serial') {
      throw new FlashError('port-error', `${this.id} is behind a TCP bridge (${this.options.settings.port}): flash it on the bridge's host`);
    }
    if (this.options.settings.board === 'espruino') {
      throw new FlashError('port-error', `${this.id} is an Espruino board: stop the daemon and run tether flash --board espruino --port ${target.path}`);
    }
    if (this.flashing) throw new FlashError('port-busy', `${this.id} is already being flashed`);
    this.flashing = true;
    const link = this.link;
    const lease = link.acquireLease('flashing');
    try {
      if (link.state === 'sleeping') await link.ready(5000).catch(() => undefined);
      this.log.info({ bytes: image.bytes.length, source: image.source }, 'flashing new firmware through the daemon');
      await link.pause('flashing new firmware');
      // Let the line go quiet: a board's bootloader window (and the emulator's DTR stand-in) wants it.
      await new Promise((r) => setTimeout(r, 1200));
      return await flashSerialPort({ path: target.path, board: BOARDS.uno, image, onProgress });
    } finally {
      link.resume();
      await link.ready(20_000).catch((err: Error) => this.log.warn({ err: err.message }, 'not ready again after flashing'));
      lease.release();
      this.flashing = false;
    }
  }

  // ---- inside ---------------------------------------------------------------------------

  private onLinkState(change: StateChange): void {
    this.state = change.to;
    this.enqueue(homieTopics.state(this.id), change.to, 'state');
    this.publishKeepalive();
  }

  private onBrokerUp(): void {
    // After a reconnect the broker may have lost retained values (restart without
    // persistence): publish the current state again. Coalescing keeps this cheap.
    this.enqueue(homieTopics.description(this.id), JSON.stringify(this.description), 'state');
    this.enqueue(homieTopics.state(this.id), this.state, 'state');
    for (const component of this.components) {
      for (const [property, value] of component.values()) this.publishProperty(component.id, property, value, 'state');
    }
    this.publishKeepalive();
  }

  private onMessage(topic: string, payload: Buffer): void {
    const target = parseSetTopic(this.id, topic);
    if (!target) return; // another device's topic on a shared session
    const component = this.components.find((c) => c.id === target.node);
    const property = component?.node.properties[target.property];
    if (!component || !property) {
      this.reject(topic, 'no such settable property');
      return;
    }
    const result = parseSetPayload(property, payload);
    if (!result.ok) {
      this.reject(topic, result.reason);
      return;
    }
    this.counters.setsApplied++;
    this.log.info({ topic, value: result.value }, 'applying /set');
    component.set(target.property, result.value);
  }

  private reject(topic: string, reason: string): void {
    this.counters.setsRejected++;
    this.log.warn({ topic, reason, rejected: this.counters.setsRejected }, `rejected /set: ${reason}`);
  }

  private publishProperty(node: string, property: string, value: string, kind: PublishKind): void {
    this.enqueue(homieTopics.property(this.id, node, property), value, kind);
  }

  private publishKeepalive(reboot?: RebootInfo): void {
    const stats = this.link.stats();
    const p = (property: string, value: string | number | null, kind: OutboxKind = 'state') => {
      if (value !== null) this.enqueue(homieTopics.property(this.id, 'tether', property), String(value), kind);
    };
    p('rtt', stats.rttMs.last === null ? null : Number(stats.rttMs.last.toFixed(1)), 'telemetry');
    if (stats.lastSeen !== null) p('last-seen', new Date(Date.now() - (performance.now() - stats.lastSeen)).toISOString(), 'telemetry');
    p('boot-id', stats.bootId);
    p('reboots', Object.values(stats.reboots).reduce((a, b) => a + b, 0));
    p('asleep-time', Number((stats.asleepMs / 1000).toFixed(1)));
    if (reboot) p('reset-cause', reboot.causes[0] ?? 'unknown');
  }

  private enqueue(topic: string, payload: string, kind: OutboxKind): void {
    if (this.stopped) return;
    const entry = this.outbox.enqueue({ topic, payload: Buffer.from(payload), qos: 1, retain: true, kind });
    this.log.debug({ id: entry.id, topic, payload, kind }, 'queued for the broker');
  }
}
