import { join } from 'node:path';
import type five from 'johnny-five';
import type { DeviceSettings, TetherConfig } from '../config/config-schema.ts';
import { createComponent } from '../components/create-component.ts';
import type { DeviceComponent, PublishKind } from '../components/device-component.ts';
import { espruinoConsoleLogger } from '../espruino/espruino-console.ts';
import { EspruinoReplTransport } from '../espruino/espruino-repl-transport.ts';
import { homieTopics } from '../homie/homie-topics.ts';
import { DeviceLink, type DeviceLinkOptions } from '../link/device-link.ts';
import type { Logger } from '../log/logger.ts';
import type { BrokerSession, MessageInfo } from '../mqtt/broker-session.ts';
import { DurableOutbox, type OutboxKind } from '../mqtt/durable-outbox.ts';
import type { JournalFdPool } from '../mqtt/journal-fd-pool.ts';
import type { KeepalivePathStore } from '../mqtt/keepalive-path-store.ts';
import { OutboxPump } from '../mqtt/outbox-pump.ts';
import type { RebootInfo, StateChange } from '../session/device-session.ts';
import { PhiAccrualDetector } from '../session/phi-accrual-detector.ts';
import { TetherIO } from '../tether-io/tether-io.ts';
import type { Clock } from '../time/clock.ts';
import { createTransport } from '../transport/create-transport.ts';
import type { GatewayEventBus } from './gateway-events.ts';
import { ownerUserProperties, type OwnerRecord } from './board-ownership.ts';
import { SessionView } from './shared-session-dispatcher.ts';
import type { StartGate } from './start-gate.ts';

/** A board session that is not up after this long gives its place in the StartGate to the next (it keeps trying on its own). */
const SESSION_START_HOLD_MS = 10_000;
/** A board holding a place after up gives it back after this many of its publishes are acknowledged (a backlog after an outage is longer). */
const START_ACKS_HELD = 32;
/** A link not settled (ready, lost, ...) after this long gives its place in the link StartGate to the next. */
const LINK_START_HOLD_MS = 5_000;

export interface GatewayDeviceOptions {
  settings: DeviceSettings;
  queue: TetherConfig['queue'];
  /** Makes this device's MQTT session (its own, with a Last Will; or the gateway's, shared). */
  mqtt: () => BrokerSession;
  /** True when `mqtt` hands out the gateway's own session (shared-session mode). */
  sharedMqtt: boolean;
  /** The daemon's bound on outbox journals holding a descriptor at once (absent: none). */
  journalFds?: JournalFdPool;
  /**
   * The daemon's bound on board sessions connecting at once (absent: none): a session holds a
   * place from its start until it is up and its start-up publishes are acknowledged, or SESSION_START_HOLD_MS.
   */
  sessionStarts?: StartGate;
  /**
   * The daemon's bound on links opening at once (absent: none): a link holds a place from its
   * open until its first state past `init` (ready after the handshake, or lost), or
   * LINK_START_HOLD_MS. All of a fleet's TCP connects and handshakes at once kept the event
   * loop from reading their answers in time: connects past their 2 s bound, boards lost.
   */
  linkStarts?: StartGate;
  /**
   * Shared-session mode: this board's view of the shared session (SharedSessionDispatcher), which
   * its outbox publishes through and whose ups and messages it hears, instead of listening on the
   * session itself.
   */
  sessionView?: () => SessionView;
  events: GatewayEventBus;
  /** Where tcp:// links keep what they learned about their path (the gateway's keepalive-paths.json). */
  pathStore?: KeepalivePathStore;
  clock: Clock;
  logger: Logger;
}

export interface GatewayDeviceCounters {
  setsApplied: number;
  setsRejected: number;
  /** Times its link was closed and reopened because its session was wedged (DeviceWedgeGuard). */
  wedgeRecoveries: number;
  /**
   * Messages this gateway had queued for the board and dropped, counted as lost, because
   * another gateway held the board meanwhile and publishes its state (README "More than one gateway").
   */
  outboxSuperseded: number;
}

/**
 * Whether this gateway serves the board (BoardOwnership decides): `pending` until the
 * ownership is known (messages are queued as always), `held` (served), `standby` (another
 * gateway holds it: the port is closed and nothing is queued or published for it).
 */
export type HoldMode = 'pending' | 'held' | 'standby';

/**
 * One board as the gateway holds it: its keepalive link (through TetherIO and Johnny-Five
 * components on an Uno; a plain DeviceLink over the REPL framing on an Espruino board), its
 * MQTT session and its durable outbox. What it means on the broker (Homie, commands, ...) is
 * the extensions' business: this class only reports events on the gateway's bus and
 * publishes what it is given, durably.
 *
 * The constructor does nothing; open() reads the outbox journal and builds the parts;
 * start() opens the port and connects; stop() undoes exactly what was done.
 */
export class GatewayDevice {
  readonly id: string;
  readonly settings: DeviceSettings;
  readonly components: DeviceComponent[];
  readonly counters: GatewayDeviceCounters = { setsApplied: 0, setsRejected: 0, wedgeRecoveries: 0, outboxSuperseded: 0 };
  private readonly log: Logger;
  private parts: { link: DeviceLink; mqtt: BrokerSession; view: BrokerSession | SessionView; outbox: DurableOutbox; pump: OutboxPump } | null = null;
  private io: TetherIO | null = null;
  private jfBoard: five.Board | null = null;
  private started = false;
  private stopped = false;
  private mode: HoldMode = 'pending';
  private linkOpened = false;
  /** Waiting for a place in the link StartGate. */
  private linkWaiting = false;
  /** Gives back this board's place in the link StartGate (held while its link opens). */
  private linkPlace: (() => void) | null = null;
  /** The board session has run (and stopped): a new hold needs a fresh one. */
  private sessionUsed = false;
  private detachMqtt: (() => void) | null = null;
  /** Gives back this board's place in the session StartGate (held while its session connects). */
  private startPlace: (() => void) | null = null;
  private readonly undo: Array<() => void> = [];

  constructor(private readonly options: GatewayDeviceOptions) {
    this.settings = options.settings;
    this.id = options.settings.id;
    this.log = options.logger.child({ device: this.id });
    this.components = options.settings.components.map(createComponent);
  }

  /** The keepalive session with the board (the same for both board families). */
  get link(): DeviceLink {
    return this.opened().link;
  }

  /** This device's MQTT session (the gateway's own in shared-session mode). */
  get mqtt(): BrokerSession {
    return this.opened().mqtt;
  }

  get outbox(): DurableOutbox {
    return this.opened().outbox;
  }

  /**
   * Its messages reach the broker now: its session (or, shared-session mode, its view of the
   * gateway's) is connected. Until then, what is republished after every connect need not be queued.
   */
  get brokerConnected(): boolean {
    return this.parts?.view.connected ?? false;
  }

  /** Firmata for Johnny-Five once started: an Uno with components only (an Espruino board runs no Firmata). */
  get tetherIO(): TetherIO | null {
    return this.io;
  }

  /** Whether this gateway serves the board (see HoldMode). */
  get holdMode(): HoldMode {
    return this.mode;
  }

  /** Johnny-Five, once started, only when the device has components. */
  get board(): five.Board | null {
    return this.jfBoard;
  }

  /**
   * Reads the outbox journal and builds the link and the MQTT session, without opening anything.
   * `queueFiles`: the names in the queue directory, listed once by the gateway under its queue
   * lock; a board whose journal is not among them starts an empty outbox without asking the disk.
   */
  async open(queueFiles?: ReadonlySet<string>): Promise<void> {
    if (this.parts) return;
    const { settings } = this.options;
    const file = `${settings.id}.outbox`;
    const outbox = await DurableOutbox.open(join(this.options.queue.dir, file), {
      knownAbsent: queueFiles !== undefined && !queueFiles.has(file),
      maxEntries: this.options.queue.maxEntries,
      maxBytes: this.options.queue.maxBytes,
      fsync: this.options.queue.fsync,
      logger: this.log,
      clock: this.options.clock, // the board timers: its idle-close timer joins the fleet's one heap
      fdPool: this.options.journalFds,
    });
    const mqtt = this.options.mqtt();
    const view = this.options.sessionView?.() ?? mqtt;
    const pump = new OutboxPump(outbox, view, { logger: this.log });
    this.parts = { link: this.createLink(), mqtt, view, outbox, pump };
  }

  /**
   * Listens to the link and the session. In shared-session mode it also opens the port and
   * starts delivering; otherwise the board's own session waits for acquire() (BoardOwnership:
   * its client id is the lock between gateways), and the port opens now unless the board is
   * a `standby` one.
   */
  async start(): Promise<void> {
    const { link, mqtt, view, pump } = this.opened();
    if (this.started) return;
    this.started = true;
    const { events } = this.options;
    const onState = (change: StateChange) => events.emit('deviceState', this, change);
    const onReboot = (info: RebootInfo) => events.emit('deviceReboot', this, info);
    link.on('state', onState);
    link.on('reboot', onReboot);
    this.undo.push(() => {
      link.off('state', onState);
      link.off('reboot', onReboot);
    });
    this.undo.push(() => this.detachMqtt?.());
    if (this.options.sharedMqtt) {
      // Its view of the shared session: only its own topics reach it.
      this.listenTo(view);
      this.mode = 'held';
      pump.start();
      // The shared session may have come up before this board started listening: it is up for it too.
      if (view instanceof SessionView && view.connected && view.lastUp) events.emit('brokerUp', this, view.lastUp);
    } else {
      this.listenTo(mqtt);
    }
    if (this.options.sharedMqtt || (!this.settings.standby && this.mode !== 'standby')) await this.openLink();
  }

  /**
   * Serves the board from now on as `claim` (BoardOwnership won it): its session connects
   * (taking over the client id; MQTT 5 publishes carry the claim), the outbox drains, the port
   * opens (or reopens). `superseded`: another gateway held the board since this one queued
   * its messages, so they are dropped (counted in outboxSuperseded), not sent over the newer state.
   */
  async acquire(claim: OwnerRecord, options: { superseded: boolean }): Promise<void> {
    const parts = this.opened();
    if (this.stopped || this.options.sharedMqtt || this.mode === 'held') return;
    if (!this.started) await this.start(); // acquired before the gateway started its devices
    if (options.superseded) this.dropQueued(`another gateway held the board before this one took it (epoch ${claim.epoch})`);
    if (this.sessionUsed) {
      // A BrokerSession runs once: a new one, with the subscriptions the extensions made on the old.
      const fresh = this.options.mqtt();
      for (const { topic, qos, noLocal } of parts.mqtt.subscriptionList) void fresh.subscribe(topic, qos, { noLocal });
      this.detachMqtt?.();
      parts.mqtt = fresh;
      parts.view = fresh;
      parts.pump = new OutboxPump(parts.outbox, fresh, { logger: this.log });
      this.listenTo(fresh);
      this.sessionUsed = false;
    }
    this.mode = 'held';
    parts.mqtt.publishUserProperties = ownerUserProperties(claim);
    const gate = this.options.sessionStarts;
    if (gate) {
      const mqtt = parts.mqtt;
      const release = gate.tryEnter() ?? (await gate.enter());
      // Let go or stopped while waiting for its place: nothing to start.
      if (this.stopped || this.mode !== 'held' || parts.mqtt !== mqtt) {
        release();
        return;
      }
      // Until up and its start-up publishes are acknowledged (its 'up' listener comes after the
      // extensions', so they are queued by then): the boards starting at once then bound what
      // the daemon holds in flight, not only the CONNECTs (issue 15: with the place given back
      // at CONNACK, every board that was up had its ~20 publishes waiting on a busy broker).
      // The pump says when nothing is in flight (an outbox 'ack' does not: a publish whose entry
      // a newer one replaced meanwhile settles without one); a backlog gives the place back
      // after START_ACKS_HELD acknowledgements.
      const { outbox, pump } = parts;
      this.holdPlace('startPlace', release, SESSION_START_HOLD_MS, (done) => {
        let acks = 0;
        let stopWaiting = () => {};
        const onAck = () => {
          if (++acks >= START_ACKS_HELD) done();
        };
        const onUp = () => {
          mqtt.off('up', onUp);
          if (outbox.size === 0) return done();
          stopWaiting = pump.onceIdle(done);
          outbox.on('ack', onAck);
        };
        mqtt.on('up', onUp);
        return () => {
          mqtt.off('up', onUp);
          outbox.off('ack', onAck);
          stopWaiting();
        };
      });
    }
    parts.mqtt.start();
    parts.pump.start();
    if (!this.linkOpened) await this.openLink();
    else parts.link.resume();
  }

  /**
   * Another gateway holds the board: stop serving it at once (no flush, no final publish; a
   * clean DISCONNECT if the session is still up), close the port (paused: acquire() reopens
   * it), and drop what was queued for it.
   */
  async release(reason: string): Promise<void> {
    const parts = this.opened();
    if (this.stopped || this.options.sharedMqtt) return;
    const wasHeld = this.mode === 'held';
    this.mode = 'standby';
    this.startPlace?.();
    if (wasHeld) {
      const pumpStopped = parts.pump.stop();
      await parts.mqtt.stop();
      await pumpStopped;
      this.sessionUsed = true;
    }
    if (this.linkOpened) await parts.link.pause(reason);
    this.dropQueued(reason);
  }

  /** Another live gateway holds the board: keep the port closed and queue nothing for it. */
  async standBy(reason: string): Promise<void> {
    await this.release(reason);
  }

  /**
   * Queues a message for the broker in the durable outbox (retained, QoS 1): delivered at
   * least once, across broker outages and restarts. Ignored after stop(). `durable: false`
   * for what the caller publishes again, current, after every broker (re)connect (and so after
   * a restart): it is queued and delivered the same while the daemon runs, but never journaled
   * (OutboxMessage.durable).
   */
  publish(topic: string, payload: string, kind: OutboxKind | PublishKind, options: { durable?: boolean } = {}): void {
    // Standing by: the gateway holding the board publishes for it, never two at once.
    if (this.stopped || !this.parts || this.mode === 'standby') return;
    const entry = this.parts.outbox.enqueue({ topic, payload: Buffer.from(payload), qos: 1, retain: true, kind, durable: options.durable });
    this.log.debug({ id: entry.id, topic, payload, kind }, 'queued for the broker');
  }

  /**
   * Leaves on purpose: the queue flushed (up to `flushTimeoutMs`), a clean DISCONNECT (so
   * the broker does not send the will), the port closed, the journal closed.
   * Publish what should go out last (e.g. `$state disconnected`) before calling it.
   */
  async stop(flushTimeoutMs = 3000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.startPlace?.();
    this.linkPlace?.();
    const parts = this.parts;
    if (!parts) return;
    if (this.started) {
      if (this.mode === 'held') {
        let timer;
        await Promise.race([parts.pump.flushed(), new Promise<void>((r) => (timer = this.options.clock.setTimeout(r, flushTimeoutMs)))]);
        if (timer !== undefined) this.options.clock.clearTimeout(timer);
      }
      await parts.pump.stop();
      if (!this.options.sharedMqtt) await parts.mqtt.stop();
      if (this.io) await this.io.close();
      else await parts.link.close();
    }
    for (const undo of this.undo.splice(0).reverse()) undo();
    await parts.outbox.close();
  }

  private opened(): NonNullable<GatewayDevice['parts']> {
    if (!this.parts) throw new Error(`device ${this.id} is not open yet`);
    return this.parts;
  }

  private listenTo(mqtt: BrokerSession | SessionView): void {
    const { events } = this.options;
    const onUp = (info: { sessionPresent: boolean }) => events.emit('brokerUp', this, info);
    const onMessage = (topic: string, payload: Buffer, info: MessageInfo) => events.emit('mqttMessage', this, topic, payload, info);
    mqtt.on('up', onUp);
    mqtt.on('message', onMessage);
    this.detachMqtt = () => {
      mqtt.off('up', onUp);
      mqtt.off('message', onMessage);
      this.detachMqtt = null;
    };
  }

  /** Opens the port: the link directly (Espruino), or TetherIO under Johnny-Five (Uno). */
  private async openLink(): Promise<void> {
    if (this.linkOpened || this.linkWaiting) return;
    const gate = this.options.linkStarts;
    if (gate) {
      let release = gate.tryEnter();
      if (!release) {
        this.linkWaiting = true;
        release = await gate.enter();
        this.linkWaiting = false;
        // Stopped, or let go (standby), while waiting: nothing to open (acquire() opens it later).
        if (this.stopped || (!this.options.sharedMqtt && this.mode === 'standby')) {
          release();
          return;
        }
      }
      this.holdLinkPlace(release);
    }
    this.linkOpened = true;
    const { link } = this.opened();
    const { events } = this.options;
    // Espruino boards run no Firmata; an Uno without components needs only its liveness: no
    // firmata.js (and its per-board handshake, buffers and pin tables) for either (issue 15).
    if (this.settings.board === 'espruino' || this.components.length === 0) {
      link.start();
      return;
    }
    // Johnny-Five first: nothing may run between TetherIO (whose link comes up, and firmata.js
    // says 'connect') and the Board listening, or the Board waits for a 'connect' already gone.
    const { default: five } = await import('johnny-five');
    if (this.stopped) return;
    // TetherIO starts the link itself: firmata.js must see the port open first.
    const io = new TetherIO({ port: this.settings.port, link });
    this.io = io;
    // sigint: false: Johnny-Five would add a SIGINT listener per board (past 10 boards a
    // MaxListenersExceededWarning) that exits the process at once, before the daemon's graceful stop.
    const options: five.BoardOption & { sigint: boolean } = { io, repl: false, debug: false, sigint: false, timeout: 2_147_483_647 };
    const board = new five.Board(options);
    this.jfBoard = board;
    board.on('ready', () => {
      for (const component of this.components) {
        component.attach({
          five,
          board,
          publish: (property, value, kind) => {
            if (!this.stopped) events.emit('componentValue', this, { component: component.id, property, value, kind });
          },
        });
      }
    });
  }

  /** Keeps the link's place until its first state past `init`, LINK_START_HOLD_MS, or stop(). */
  private holdLinkPlace(release: () => void): void {
    const { link } = this.opened();
    this.holdPlace('linkPlace', release, LINK_START_HOLD_MS, (done) => {
      const onState = (change: StateChange) => {
        if (change.to !== 'init') done();
      };
      link.on('state', onState);
      return () => link.off('state', onState);
    });
  }

  /**
   * Keeps a StartGate place in `slot` (stop() gives it back) until `until` calls its `done`
   * (`until` listens and returns how to stop listening), or `holdMs`.
   */
  private holdPlace(slot: 'startPlace' | 'linkPlace', release: () => void, holdMs: number, until: (done: () => void) => () => void): void {
    const { clock } = this.options;
    let unlisten = () => {};
    const done = () => {
      unlisten();
      clock.clearTimeout(timer);
      if (this[slot] === done) this[slot] = null;
      release();
    };
    const timer = clock.setTimeout(done, holdMs);
    this[slot] = done;
    unlisten = until(done);
  }

  /** Drops every queued message for the board (another gateway's state supersedes them). */
  private dropQueued(reason: string): void {
    const { outbox } = this.opened();
    const entries = outbox.pending();
    for (const entry of entries) outbox.ack(entry.id);
    if (entries.length === 0) return;
    this.counters.outboxSuperseded += entries.length;
    this.log.warn(
      { dropped: entries.length, total: this.counters.outboxSuperseded, reason },
      `dropped ${entries.length} message(s) queued for ${this.id} (counted as lost: ${reason})`,
    );
  }

  private createLink(): DeviceLink {
    const { settings } = this.options;
    const k = settings.keepalive;
    const session: DeviceLinkOptions['session'] = {
      pingIntervalMs: k.intervalMs,
      misses: k.misses,
      sleepGraceMs: k.sleepGraceMs,
      handshakeTimeoutMs: k.handshakeTimeoutMs,
      beats: k.beats,
      deviceConfig: settings.config,
      detector: k.detector === 'phi' ? new PhiAccrualDetector({ intervalMs: k.intervalMs, misses: k.misses, threshold: k.phiThreshold }) : undefined,
    };
    const { reopenOnLost, ...tcp } = settings.tcp;
    const keepTraffic = { ...k.keepTraffic, store: this.options.pathStore };
    const common = { target: settings.port, baudRate: settings.baudRate, clock: this.options.clock, logger: this.log, session, tcp, reopenOnLost, keepTraffic };
    const portLog = this.log.child({ port: settings.port });
    // hupcl: false keeps DTR up across close and reopen (no Uno reset on a reconnect or restart).
    const transport = () => createTransport(settings.port, { baudRate: settings.baudRate, logger: portLog, hupcl: settings.hupcl });
    if (settings.board !== 'espruino') return new DeviceLink(settings.hupcl ? common : { ...common, transportFactory: transport });
    // The same session; only the framing differs: frames ride the REPL (espruino-repl-transport.ts).
    const logConsole = espruinoConsoleLogger(portLog);
    return new DeviceLink({
      ...common,
      transportFactory: () =>
        new EspruinoReplTransport(transport(), {
          onConsole: (text) => {
            logConsole(text); // the board's own errors at warn, the rest at debug
            this.options.events.emit('deviceConsole', this, text);
          },
        }),
    });
  }
}
