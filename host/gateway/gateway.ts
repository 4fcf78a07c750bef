import { EventEmitter } from 'node:events';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TetherConfig } from '../config/config-schema.ts';
import { createExtensions } from '../extensions/create-extensions.ts';
import type { Extension } from '../extensions/extension.ts';
import { homieTopics } from '../homie/homie-topics.ts';
import type { Logger } from '../log/logger.ts';
import type { BrokerSession } from '../mqtt/broker-session.ts';
import type { EmbeddedBroker } from '../mqtt/embedded-broker.ts';
import { resolveBrokerCredentials, type BrokerCredentials } from '../mqtt/broker-credentials.ts';
import { lockQueueDir } from '../mqtt/queue-lock.ts';
import { readTls } from '../mqtt/broker-session.ts';
import { probeIdle, type IdleProbeOptions, type IdleProbeResult } from '../mqtt/idle-probe.ts';
import { PathKeepalive } from '../mqtt/path-keepalive.ts';
import { KeepalivePathStore } from '../mqtt/keepalive-path-store.ts';
import { redactUrl } from '../log/redact.ts';
import { systemClock, type Clock, type WallClock } from '../time/clock.ts';
import { SharedTimers } from '../time/shared-timers.ts';
import { JournalFdPool } from '../mqtt/journal-fd-pool.ts';
import { boardClientId, BoardOwnership } from './board-ownership.ts';
import { TakeoverDetector } from './takeover-detector.ts';
import { createBrokerSession, protocolNegotiation } from './create-broker-session.ts';
import { DeviceWedgeGuard } from './device-wedge-guard.ts';
import { GatewayDevice } from './gateway-device.ts';
import { SharedSessionDispatcher } from './shared-session-dispatcher.ts';
import { forEachConcurrently } from './for-each-concurrently.ts';
import { StartGate } from './start-gate.ts';
import type { GatewayEventBus, GatewayEvents } from './gateway-events.ts';

export interface GatewayOptions {
  /** Where NOTIFY_SOCKET and WATCHDOG_USEC are read (default process.env; {} keeps systemd out). */
  env?: NodeJS.ProcessEnv;
  clock?: Clock & WallClock;
  /** Overrides for the wedge guard's bounds (tests; defaults in DeviceWedgeGuard). */
  wedgeGuard?: { wedgeGraceMs?: number; maxBackoffMs?: number; sampleMs?: number };
}

/**
 * Outbox journals holding a descriptor at once, for the whole daemon (journal-fd-pool.ts): the
 * bursts in which every board writes (start-up) queue for these instead of needing a descriptor
 * per board next to its two sockets.
 */
const JOURNAL_FDS = 64;

/**
 * Outbox journals opened at once at start (each a read or create and a sync): 2,000 journals
 * took 9.0 s one after the other and 2.9-3.4 s 16 to 256 at a time on this kind of machine.
 */
const OPEN_CONCURRENCY = 16;

/**
 * Board sessions starting at once (each from its CONNECT until its start-up publishes are
 * acknowledged): this many keep the broker busy without thousands of CONNECTs and their
 * publishes landing in the same turns, and bound what a fleet's start holds in flight.
 */
const SESSION_STARTS = 256;

/**
 * Board links opening at once (each from its TCP connect until its handshake is answered or it
 * is lost): a 9,900-board start with every connect and handshake at once lost 14,630 boards'
 * PONG deadlines (issue 15); this many at a time keep the turns short.
 */
const LINK_STARTS = 256;

/** Devices started one after the other for at most this long before the loop reads its sockets. */
const DEVICE_START_SLICE_MS = 20;

/**
 * The daemon's controller (in the spirit of Zigbee2MQTT's): it owns the device links and
 * the broker sessions (the gateway's own, whose Last Will marks the gateway lost, and one
 * per board, or one shared), starts an embedded broker when no URL is configured, and emits
 * typed events (gateway-events.ts). Everything a user sees on the broker or elsewhere
 * (Homie, /set commands, metrics, systemd, the control socket) is an extension
 * (host/extensions/) that listens to those events and can be switched off in the config.
 *
 * The constructor does nothing; start() starts, in order: embedded broker, device outboxes,
 * extensions, connections; stop() (also called when a step of start() fails) undoes exactly
 * what was done, in reverse.
 */
export class Gateway {
  readonly events: GatewayEventBus = new EventEmitter<GatewayEvents>();
  readonly devices: GatewayDevice[];
  readonly extensions: Extension[];
  readonly clock: Clock & WallClock;
  /**
   * The boards' timers (PINGs, lost deadlines, reconnects, their MQTT sessions' keepalive): one
   * heap behind one runtime timer rather than several timers per board (issue 15).
   */
  readonly boardTimers: SharedTimers;
  /** At most JOURNAL_FDS boards' outbox journals hold a descriptor at once: a board costs its two sockets. */
  readonly journalFds: JournalFdPool;
  /** At most SESSION_STARTS boards' MQTT sessions connecting at once (start-gate.ts). */
  readonly sessionStarts = new StartGate(SESSION_STARTS);
  /** At most LINK_STARTS boards' links opening at once (start-gate.ts). */
  readonly linkStarts = new StartGate(LINK_STARTS);
  readonly env: NodeJS.ProcessEnv;
  readonly log: Logger;
  private embeddedBroker: EmbeddedBroker | null = null;
  private url: string | null = null;
  private session: BrokerSession | null = null;
  /** Shared-session mode: hands the one session's events to the boards (one listener per event). */
  private dispatcher: SharedSessionDispatcher | null = null;
  private credentials: BrokerCredentials = {};
  private path: PathKeepalive | null = null;
  /** Credentials and TLS for the idle probe's connections (set with the path keepalive). */
  private probeConnectOptions: IdleProbeOptions['connectOptions'] = {};
  /** What the broker path and the tcp:// bridges learned about their idle timeouts (one writer per file). */
  private readonly pathStore: KeepalivePathStore;
  /** What start() did, undone in reverse by stop(). */
  private readonly teardown: Array<{ what: string; undo: () => Promise<void> }> = [];
  private stopping: Promise<void> | null = null;
  private readonly byId: Map<string, GatewayDevice>;
  private guard: DeviceWedgeGuard | null = null;
  private boardOwnership: BoardOwnership | null = null;
  /** Another daemon with this gateway id took the gateway's session over: this one left the broker. */
  private leftBroker = false;
  private readonly guardOptions: GatewayOptions['wedgeGuard'];

  constructor(
    readonly config: TetherConfig,
    logger: Logger,
    options: GatewayOptions = {},
  ) {
    this.log = logger;
    this.clock = options.clock ?? systemClock;
    this.boardTimers = new SharedTimers(this.clock);
    this.journalFds = new JournalFdPool(JOURNAL_FDS);
    this.env = options.env ?? process.env;
    this.guardOptions = options.wedgeGuard;
    this.pathStore = new KeepalivePathStore(join(config.queue.dir, 'keepalive-paths.json'), logger);
    this.devices = config.devices.map(
      (settings) =>
        new GatewayDevice({
          settings,
          queue: config.queue,
          mqtt: () => (config.broker.sharedSession ? this.mqtt : this.deviceSession(settings.id)),
          sharedMqtt: config.broker.sharedSession,
          journalFds: this.journalFds,
          sessionStarts: this.sessionStarts,
          linkStarts: this.linkStarts,
          sessionView: config.broker.sharedSession ? () => this.sharedDispatcher().view(settings.id) : undefined,
          events: this.events,
          pathStore: this.pathStore,
          clock: this.boardTimers,
          logger,
        }),
    );
    this.byId = new Map(this.devices.map((d) => [d.id, d]));
    this.extensions = createExtensions(this);
  }

  /** new Gateway(...) then start(). */
  static async start(config: TetherConfig, logger: Logger, options: GatewayOptions = {}): Promise<Gateway> {
    const gateway = new Gateway(config, logger, options);
    await gateway.start();
    return gateway;
  }

  get id(): string {
    return this.config.gateway.id;
  }

  /** The broker in use (the embedded one's URL when none is configured); known once started. */
  get brokerUrl(): string {
    if (this.url === null) throw new Error('the gateway has not started');
    return this.url;
  }

  /**
   * The broker URL the gateway's own session uses now: with `broker.urls`, the one it is
   * connected to (or tries next), not the first listed. What the idle probe and the status page use.
   */
  get brokerUrlInUse(): string {
    return this.session?.url ?? this.brokerUrl;
  }

  /** The embedded broker, when no broker URL is configured. */
  get embedded(): EmbeddedBroker | null {
    return this.embeddedBroker;
  }

  /** The gateway's own MQTT session (its `$state`, its will; all boards' in shared-session mode). */
  get mqtt(): BrokerSession {
    if (!this.session) throw new Error('the gateway has not started');
    return this.session;
  }

  /**
   * The keepalive traffic of the broker path (every session's PINGREQ interval, what was
   * learned about the path's idle timeout); known once started.
   */
  get pathKeepalive(): PathKeepalive {
    if (!this.path) throw new Error('the gateway has not started');
    return this.path;
  }

  /** Recovers wedged device sessions one by one (close and reopen the link); running once the devices are. */
  get wedgeGuard(): DeviceWedgeGuard | null {
    return this.guard;
  }

  /** Which boards this gateway serves and which it stands by for (null in shared-session mode); known once started. */
  get ownership(): BoardOwnership | null {
    return this.boardOwnership;
  }

  /** The running extension of this class, if enabled. */
  extension<T extends Extension>(type: abstract new (...args: never[]) => T): T | undefined {
    return this.extensions.find((e): e is T => e instanceof type);
  }

  async start(): Promise<void> {
    const { config, log } = this;
    try {
      // One daemon per queue directory, before anything else starts (broker, journals, sockets):
      // a second one would hand out the same outbox ids and take the first's sessions over.
      await mkdir(config.queue.dir, { recursive: true, mode: 0o700 });
      await this.step('queue lock', async () => {
        const lock = await lockQueueDir(config.queue.dir, { logger: log });
        return () => lock.release();
      });
      this.credentials = await resolveBrokerCredentials(config.broker, config.broker.url ?? 'mqtt://127.0.0.1', this.env, log);
      await this.step('embedded broker', async () => {
        if (config.broker.url) {
          this.url = config.broker.url;
          log.info({ url: redactUrl(this.url) }, `using the MQTT broker at ${redactUrl(this.url)}`);
          return null;
        }
        const { startEmbeddedBroker } = await import('../mqtt/embedded-broker.ts');
        // With broker.username set, the embedded broker admits that user only (the gateway uses it too).
        const { username, password } = this.credentials;
        const users = username !== undefined ? { [username]: password ?? '' } : undefined;
        const embedded = await startEmbeddedBroker({ port: config.broker.embeddedPort, users, logger: log });
        this.embeddedBroker = embedded;
        this.url = embedded.url;
        log.info({ url: this.url }, `no broker configured: started the embedded MQTT broker on ${this.url} (set broker.url to use your own)`);
        return () => embedded.close();
      });
      await this.step('path keepalive', async () => {
        const path = this.createPathKeepalive();
        this.path = path;
        await path.start();
        return async () => {
          path.stop();
          await path.flushed();
        };
      });
      this.session = createBrokerSession(this.brokerSettings(), {
        credentials: this.credentials,
        url: this.brokerUrl,
        clientId: `tether-${this.id}`,
        keepaliveTraffic: this.pathKeepalive,
        will: { topic: homieTopics.state(this.id), payload: 'lost', qos: 1, retain: true },
        clock: this.clock,
        logger: log.child({ device: this.id }),
      });
      const opened: GatewayDevice[] = [];
      await this.step('device outboxes', async () => {
        // One listing instead of a failed open per board whose journal does not exist (most of
        // them: boards without components journal nothing). Under the queue lock: no other
        // daemon creates a journal here meanwhile, and this one creates none before open.
        const queueFiles = new Set(await readdir(config.queue.dir));
        // Several at a time: each open reads (or creates) and syncs a journal, about 3 ms one
        // after the other, i.e. 30 s for 10,000 boards before anything else could start.
        const failure = await forEachConcurrently(this.devices, OPEN_CONCURRENCY, async (device) => {
          await device.open(queueFiles);
          opened.push(device);
        });
        if (failure) {
          await Promise.all(opened.map((d) => d.stop()));
          throw failure.err;
        }
        return () => Promise.all(opened.map((d) => d.stop())).then(() => {});
      });
      for (const extension of this.extensions) {
        await this.step(`extension ${extension.name}`, async () => {
          await extension.start();
          return () => extension.stop();
        });
      }
      await this.step('gateway MQTT session', async () => {
        const session = this.mqtt;
        const onUp = (info: { sessionPresent: boolean }) => this.events.emit('brokerUp', null, info);
        session.on('up', onUp);
        // Shared session: the boards hear it through the dispatcher, after the gateway's own 'up'.
        this.dispatcher?.attach();
        session.start();
        return async () => {
          await session.stop({ finalPublish: { topic: homieTopics.state(this.id), payload: 'disconnected', qos: 1, retain: true } });
          session.off('up', onUp);
          this.dispatcher?.detach();
        };
      });
      // One session per board: its client id (the same on every gateway) is the lock; BoardOwnership decides when to take it.
      // Before the devices: the check runs while Johnny-Five loads (a board acquired early is started by acquire()).
      if (!config.broker.sharedSession) {
        await this.step('board ownership', async () => {
          const session = this.mqtt;
          const ownership = new BoardOwnership({ gatewayId: this.id, session, boards: this.devices, clock: this.clock, logger: log });
          this.boardOwnership = ownership;
          // A duplicate daemon (same gateway id) takes this session over again and again: leave instead.
          const detector = new TakeoverDetector(session, {
            clock: this.clock,
            onKick: (kick) => {
              ownership.gatewayKicked();
              if (kick.kind === 'disconnect-0x8e' || kick.count >= 3) void this.gatewaySessionTakenOver();
            },
          });
          await ownership.start();
          return async () => {
            detector.stop();
            ownership.stop();
          };
        });
      }
      await this.step('devices', async () => {
        // In slices with a turn of the event loop between them: each start opens a link (a TCP
        // connect and its connect deadline), and a loop that only polls its sockets after all
        // of them found the first deadlines past before their connects were read (2,222 of
        // 5,000 links `no connection within 2000 ms` at start, issue 15).
        let sliceStart = this.clock.now();
        for (const device of this.devices) {
          await device.start();
          if (this.clock.now() - sliceStart >= DEVICE_START_SLICE_MS) {
            await new Promise<void>((resolve) => setImmediate(resolve));
            sliceStart = this.clock.now();
          }
        }
        return () => Promise.all(this.devices.map((d) => d.stop())).then(() => {});
      });
      await this.step('device wedge guard', async () => {
        // Built once: the guard looks every 2 s, and the devices and their links stay the same.
        const watched = this.devices.map((d) => ({ id: d.id, handshakeTimeoutMs: d.settings.keepalive.handshakeTimeoutMs, link: d.link }));
        const guard = new DeviceWedgeGuard({
          devices: () => watched,
          onRecovery: ({ id }) => this.byId.get(id)!.counters.wedgeRecoveries++,
          clock: this.clock,
          logger: log,
          ...this.guardOptions,
        });
        this.guard = guard;
        guard.start();
        return async () => {
          await guard.stop();
          this.guard = null;
        };
      });
    } catch (err) {
      log.error({ err: (err as Error).message }, `the gateway could not start: ${(err as Error).message}`);
      await this.stop();
      throw err;
    }
    log.info({ devices: this.devices.map((d) => d.id) }, `gateway ${this.id} started with ${this.devices.length} device(s)`);
  }

  /**
   * Graceful stop: extensions are told first (systemd's STOPPING=1, every device's
   * `$state disconnected`), then what start() did is undone in reverse: queues flushed,
   * clean MQTT disconnects (no will), ports and journals closed, the embedded broker last.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const extension of [...this.extensions].reverse()) {
        try {
          await extension.beforeStop?.();
        } catch (err) {
          this.log.warn({ extension: extension.name, err: (err as Error).message }, 'an extension failed to prepare for the stop');
        }
      }
      for (const { what, undo } of this.teardown.splice(0).reverse()) {
        try {
          await undo();
        } catch (err) {
          this.log.warn({ step: what, err: (err as Error).message }, `stopping ${what} failed: ${(err as Error).message}`);
        }
      }
      this.log.info({}, 'gateway stopped');
    })();
    return this.stopping;
  }

  /**
   * Certificates rotate: every MQTT session reads its TLS files again and uses them from its
   * next connection on (the daemon calls this on SIGHUP). The boards' links are not touched.
   */
  reloadTls(): void {
    const sessions = new Set<BrokerSession>(this.session ? [this.session] : []);
    for (const d of this.devices) {
      try {
        sessions.add(d.mqtt);
      } catch {
        // not open
      }
    }
    let changed = 0;
    try {
      for (const s of sessions) if (s.reloadTls()) changed++;
    } catch (err) {
      this.log.error({ err: (err as Error).message }, `TLS files not reloaded, the old ones stay in use: ${(err as Error).message}`);
      return;
    }
    this.log.info({ sessions: sessions.size, changed }, `TLS files reloaded for ${sessions.size} MQTT session(s): ${changed ? 'new ones are used from the next connection' : 'unchanged'}`);
  }

  /**
   * MQTT 5: another connection took the gateway's own client id: a second daemon with the same
   * gateway id. Fighting back would make both reconnect forever (each taking the other's
   * sessions over); this one lets its boards go and leaves the broker instead.
   */
  private async gatewaySessionTakenOver(): Promise<void> {
    if (this.leftBroker) return;
    this.leftBroker = true;
    this.log.error(
      { gateway: this.id },
      `another process took over the MQTT session of gateway ${this.id} (a second daemon with the same gateway.id?): this daemon lets its boards go and stays off the broker; give each gateway its own gateway.id`,
    );
    const sessionStopped = this.session?.stop(); // first: no reconnect may slip in while the boards let go
    await this.boardOwnership?.releaseAll(`gateway session of ${this.id} taken over by another daemon`);
    this.boardOwnership?.stop();
    await sessionStopped;
  }

  /** Runs one start step and remembers how to undo it. */
  private async step(what: string, run: () => Promise<(() => Promise<void>) | null>): Promise<void> {
    const undo = await run();
    if (undo) this.teardown.push({ what, undo });
  }

  /** Aedes speaks MQTT 3.1.1: persistent sessions there use clean=false instead of session expiry. */
  private brokerSettings(): TetherConfig['broker'] {
    return this.embeddedBroker ? { ...this.config.broker, protocolVersion: 4 } : this.config.broker;
  }

  /** One per gateway: every session goes to the same broker URL, through the same path. */
  private createPathKeepalive(): PathKeepalive {
    const broker = this.brokerSettings();
    const traffic = broker.keepaliveTraffic;
    const keepaliveMs = broker.keepaliveSec * 1000;
    const { username, password } = this.credentials;
    // Read once (files): every probe connects with the same.
    this.probeConnectOptions = { username, password, ...readTls(broker.tls) };
    return new PathKeepalive({
      url: this.brokerUrl,
      keepaliveMs,
      fixedIntervalMs: traffic.intervalSec !== undefined ? traffic.intervalSec * 1000 : traffic.learn ? undefined : keepaliveMs,
      minIntervalMs: traffic.minIntervalSec * 1000,
      storeFile: this.pathStore.file,
      store: this.pathStore,
      probe: (idleMs, signal) => this.probeIdle(idleMs, signal),
      clock: this.clock,
      logger: this.log,
    });
  }

  /**
   * One idle test (PathKeepalive's probe) on a connection of its own to the broker URL in use:
   * with `broker.urls`, the node the sessions are on now, not the first listed (it may be down).
   */
  probeIdle(idleMs: number, signal?: AbortSignal): Promise<IdleProbeResult> {
    const broker = this.brokerSettings();
    const url = this.brokerUrlInUse;
    return probeIdle({
      url,
      clientId: `tether-${this.id}-probe`,
      protocolVersion: protocolNegotiation(broker, this.credentials).versionFor(url),
      keepaliveSec: broker.keepaliveSec,
      idleMs,
      pingRespTimeoutMs: broker.pingRespTimeoutMs,
      connectTimeoutMs: broker.keepaliveSec * 1000 + broker.pingRespTimeoutMs,
      connectOptions: this.probeConnectOptions,
      clock: this.clock,
      signal,
    });
  }

  private deviceSession(id: string): BrokerSession {
    return createBrokerSession(this.brokerSettings(), {
      credentials: this.credentials,
      url: this.brokerUrl,
      keepaliveTraffic: this.pathKeepalive,
      // The same whichever gateway serves the board, so that the broker lets one hold it (board-ownership.ts).
      clientId: boardClientId(id),
      will: { topic: homieTopics.state(id), payload: 'lost', qos: 1, retain: true },
      clock: this.boardTimers,
      logger: this.log.child({ device: id }),
    });
  }

  private sharedDispatcher(): SharedSessionDispatcher {
    this.dispatcher ??= new SharedSessionDispatcher(this.mqtt);
    return this.dispatcher;
  }
}
