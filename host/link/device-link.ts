import { EventEmitter } from 'node:events';
import { encodeFrame, encodePingInto, FrameSplitter, PING_FRAME_LENGTH, pongMessage, type PongFields, type SplitterSink } from '../../shared/protocol/index.ts';
import type { DeviceMessage, HostMessage } from '../../shared/protocol/messages.ts';
import { STATE_SIZE } from '../../shared/protocol/constants.ts';
import { FirmataCommandTracker } from '../firmata/firmata-command-tracker.ts';
import { FirmataReplyReader, type FirmataReply } from '../firmata/firmata-reply-reader.ts';
import { emptyPinRecord, isPinRecordEmpty, type PinRecord } from '../firmata/pin-record.ts';
import { registerRuns, replayCommands } from '../firmata/replay.ts';
import { silentLogger, type Logger } from '../log/logger.ts';
import { BoundedQueue } from '../session/bounded-queue.ts';
import { DeviceSession, type DeviceSessionOptions, type Hello, type RebootInfo, type SessionState, type StateChange } from '../session/device-session.ts';
import { LeaseRegistry, type Lease } from '../session/lease-registry.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import { createTransport, parseTarget } from '../transport/create-transport.ts';
import { tcpKeepaliveForBound, type TcpKeepaliveConfig } from '../transport/tcp-keepalive.ts';
import { ReconnectingTransport } from '../transport/reconnecting-transport.ts';
import { BridgeKeepalive, type BridgeKeepaliveSettings, type BridgeKeepaliveStats } from './bridge-keepalive.ts';
import type { Transport } from '../transport/transport.ts';

export interface DeviceLinkOptions {
  /** Serial device path (`/dev/ttyACM0`) or a serial-over-TCP bridge (`tcp://host:port`). */
  target: string;
  baudRate?: number;
  clock?: Clock;
  logger?: Logger;
  /** Session timing and device configuration (ping interval, misses, detector, ...). */
  session?: Omit<DeviceSessionOptions, 'send' | 'sendPing' | 'onRtt' | 'sendRaw' | 'restore' | 'clock' | 'logger' | 'leases' | 'pingsWanted'>;
  /** Writes held for a sleeping device before the oldest are dropped (default 256). */
  queueCapacity?: number;
  /**
   * Reconnect backoff (defaults: 250 ms doubling to 30 s, full jitter; for a tcp:// bridge to
   * the ping interval, at least 1 s, so a path that comes back is found within an interval).
   */
  backoff?: { initialMs?: number; maxMs?: number };
  /**
   * tcp:// only: kernel keepalive and TCP_USER_TIMEOUT; by default derived from the session's
   * bound (tcpKeepaliveForBound: user timeout = the lost bound, probes after half an interval).
   */
  tcp?: TcpKeepaliveConfig;
  /**
   * Close and reopen the transport when the board is `lost` while the transport still looks
   * open (a middlebox forgot or blackholes the connection). Default: on for tcp:// targets,
   * off for serial ports (reopening a USB port resets an Uno).
   */
  reopenOnLost?: boolean;
  /**
   * tcp:// only: keep-traffic below the path's idle timeout, learned from the link's cuts
   * (BridgeKeepalive; on by default), or at a fixed interval. The ping interval stays the
   * detection bound.
   */
  keepTraffic?: BridgeKeepaliveSettings;
  /** For tests: how to make a transport. */
  transportFactory?: () => Transport;
  /** How long to wait for a device answer (STATE_DATA, AWAKE) before giving up (default 3000 ms). */
  requestTimeoutMs?: number;
}

interface DeviceLinkEvents {
  state: [StateChange];
  /** Firmata bytes from the device (keepalive frames removed). */
  firmata: [Buffer];
  message: [DeviceMessage];
  reboot: [RebootInfo];
  rtt: [number];
  /** The transport came up (after start or a reconnect). */
  up: [];
  /** The transport went down. */
  down: [reason: string];
}

export interface DeviceLinkStats {
  target: string;
  state: string;
  protocol: string;
  bootId: number | null;
  rttMs: { last: number | null; p50: number | null; p99: number | null };
  lastSeen: number | null;
  reboots: Record<string, number>;
  replays: number;
  /** State sent again for unconfirmed writes a sleep or a lost link may have taken (not a full replay). */
  resends: number;
  verifications: number;
  queueDepth: number;
  queueDropped: number;
  pingsSent: number;
  pongs: number;
  /** BEATs: heartbeats the board sent itself (boards with the beats capability). */
  beats: number;
  lostCount: number;
  asleepMs: number;
  /** tcp:// links: the keep-traffic interval, the path's idle timeout as learned, cuts by cause (null: a serial port). */
  keepTraffic: BridgeKeepaliveStats | null;
}

const START_SYSEX = 0xf0;
const PIN_STATE_QUERY = 0x6d;
const END_SYSEX = 0xf7;
const REPORT_VERSION = 0xf9;
const MODE_OUTPUT = 0x01;
const MODE_PWM = 0x03;
/** Writes kept until a PONG proves the board read them (more are sent than a ping interval holds only in a flood). */
const MAX_UNCONFIRMED_WRITES = 1024;
/** PINGs remembered for matching PONGs to the writes they confirm. */
const MAX_PING_MARKS = 64;
/**
 * A firmware-name report within this long of the program's own firmware-name traffic (a query
 * sent, or one answered) may be an answer rather than an announcement, or the other way round.
 */
const FIRMWARE_ANSWER_MS = 2000;

/** What a pin should report in a Firmata PIN_STATE response, from the record. */
interface PinCheck {
  pin: number;
  mode: number;
  state: number | undefined;
}

/**
 * One board end to end: a transport that reconnects, the frame splitter, the keepalive
 * session, the record of what the program configured (replayed when the board forgets),
 * keep-awake leases, and a bounded queue of writes for a sleeping board.
 */
export class DeviceLink extends EventEmitter<DeviceLinkEvents> {
  readonly session: DeviceSession;
  readonly leases: LeaseRegistry;
  private readonly transport: ReconnectingTransport;
  private readonly splitter = new FrameSplitter({ from: 'device' });
  /**
   * What the program configured (made by its first Firmata write or state write: a board
   * without components has none, and a fleet of them should not carry one each). See `tracker`.
   */
  private trackerValue: FirmataCommandTracker | null = null;
  /** Made by the first Firmata bytes from the board. */
  private replies: FirmataReplyReader | null = null;
  /** When the program asked for the firmware name, oldest first (answers are matched in order). */
  private readonly firmwareQueries: number[] = [];
  /** When the program last asked for the firmware name, or a report was taken as an answer. */
  private lastFirmwareTrafficAt = -Infinity;
  /** Waiting for Firmata answers (plain-Firmata checks and barriers), oldest first, with their timeouts. */
  private replyWaiters: Map<(reply: FirmataReply) => boolean, TimerHandle> | null = null;
  /** Bumped by each plain-Firmata restore: an older one still running stops at its next step. */
  private plainRestores = 0;
  /** Writes held for a sleeping board: made by the first one held. */
  private queueValue: BoundedQueue<number[]> | null = null;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly requestTimeoutMs: number;
  /** Writes that may not have reached the device (sent while it was not ready): replay on recovery. */
  private missedWrites = false;
  /**
   * Writes sent to a `ready` board that no PONG has confirmed yet (a board handles its input in
   * order: the PONG to a PING sent after a write proves the write was read), with their number.
   */
  private unconfirmed: Array<{ n: number; bytes: number[] }> = [];
  /**
   * What the oldest unconfirmed writes touched once more than MAX_UNCONFIRMED_WRITES awaited a
   * PONG (a flood): folded together instead of forgotten, with the number of the newest of them.
   */
  private overflowed: { touched: FirmataCommandTracker; upTo: number; count: number } | null = null;
  private writesSent = 0;
  /**
   * PING seq -> writesSent when it went out, for PINGs sent while writes await confirmation
   * (made then: a board without components never needs it).
   */
  private pingMarks: Map<number, number> | null = null;
  /** onRttSample()'s listeners (made by the first). */
  private rttListeners: Array<(ms: number) => void> | null = null;
  /** The PING frame, reused while each PING leaves at once (the socket took it whole). */
  private pingFrame: Buffer | null = null;
  /**
   * What unconfirmed writes touched when a sleep or a loss may have taken them: sent again, as
   * the record holds it then, once the board is back (see writesMayBeLost).
   */
  private mayBeLost: PinRecord | null = null;
  /** Sending that again: new writes wait in the queue so they are not overtaken by older state. */
  private resending = false;
  private replays = 0;
  private resends = 0;
  private verifications = 0;
  /** Requests waiting for their answer (made by the first request). */
  private pending: Set<(m: DeviceMessage) => boolean> | null = null;
  private started = false;
  private closed = false;
  /** Paused on purpose (the port is lent out): a transport going down is not an outage. */
  private paused = false;
  private readonly reopenOnLost: boolean;
  /** tcp:// only: keep-traffic below the path's idle timeout. */
  readonly keepTraffic: BridgeKeepalive | null;
  /** A reopen of ours is under way: the 'down' it causes is no cut by the path. */
  private reopening = false;

  constructor(readonly options: DeviceLinkOptions) {
    super();
    this.clock = options.clock ?? systemClock;
    this.log = (options.logger ?? silentLogger).child({ port: options.target });
    this.requestTimeoutMs = options.requestTimeoutMs ?? 3000;
    this.leases = new LeaseRegistry({ clock: this.clock });
    this.session = new DeviceSession({
      ...options.session,
      clock: this.clock,
      logger: this.log,
      leases: this.leases,
      send: (message) => this.sendFrame(message),
      sendPing: (seq, leaseMs) => this.sendPing(seq, leaseMs),
      pingsWanted: () => this.unconfirmed.length > 0,
      onRtt: (ms) => this.rttSample(ms),
      sendRaw: (bytes) => this.transport.write(Uint8Array.from(bytes)),
      restore: (hello, rebooted) => this.restore(hello, rebooted),
      restorePlain: (rebooted) => this.restorePlain(rebooted),
    });
    const tcp = isTcpTarget(options.target);
    this.reopenOnLost = options.reopenOnLost ?? tcp;
    const intervalMs = options.session?.pingIntervalMs ?? 1000;
    // The bound after which the session says `lost`: the kernel gives a silent socket up then too.
    const boundMs = (this.session.detector as { maxBoundMs?: number }).maxBoundMs ?? intervalMs * (options.session?.misses ?? 3);
    const keepalive = tcp ? tcpKeepaliveForBound(boundMs, intervalMs, options.tcp) : undefined;
    const factory =
      options.transportFactory ??
      (() =>
        createTransport(options.target, {
          baudRate: options.baudRate,
          logger: this.log,
          keepalive,
          // A SYN lost to a blackhole is resent after 1 s, 3 s, 7 s: a short attempt sends a fresh one sooner.
          connectTimeoutMs: tcp ? Math.min(5000, Math.max(2000, intervalMs)) : undefined,
        }));
    this.transport = new ReconnectingTransport(factory, {
      clock: this.clock,
      logger: this.log,
      backoff: { initialMs: options.backoff?.initialMs ?? 250, maxMs: options.backoff?.maxMs ?? (tcp ? Math.max(1000, intervalMs) : 30_000) },
      // A bridge that accepts but carries nothing must not be retried in a tight loop.
      resetBackoffOn: tcp ? 'healthy' : 'open',
    });
    this.keepTraffic = tcp
      ? new BridgeKeepalive({
          ...options.keepTraffic,
          target: options.target,
          pingIntervalMs: intervalMs,
          clock: this.clock,
          logger: this.log,
          idleMs: () => (this.transport.isUp ? this.transport.silenceMs : Infinity),
          // Our PINGs only: a plain Firmata board would not answer them (it gets no keep-traffic).
          ready: () => this.session.state === 'ready' && this.session.protocol === 'tether' && this.transport.isUp,
          ping: () => this.session.keepPing(),
          // Generous against the board's own round trips (a slow serial line, a loaded host).
          answerMs: () => Math.max(1500, Math.min(intervalMs, 4 * (this.session.rtt.count ? this.session.rtt.p99 : 0))),
          reopen: (reason) => {
            if (this.reopenOnLost) this.reopen(reason);
          },
        })
      : null;
    this.transport.on('up', () => {
      this.session.linkUp();
      this.emit('up');
    });
    this.transport.on('down', (error) => {
      if (this.paused) return;
      if (this.keepTraffic) {
        // Closed under a ready board, not by us: a cut by the path (or a kernel giving up: half-open).
        if (!this.reopening && this.session.state === 'ready') this.keepTraffic.closed(this.transport.silenceMs, /ETIMEDOUT|TCP_USER_TIMEOUT|keepalive/i.test(error.message));
        this.keepTraffic.linkDown();
      }
      this.session.linkDown(error.message);
      this.emit('down', error.message);
    });
    // Straight from the socket's read to the splitter: no event, no Buffer per read (tcp://).
    this.transport.setReceiver((bytes, length) => this.splitter.pushTo(bytes, length, this.sink));
    this.session.on('state', (change) => this.onState(change));
    this.session.on('reboot', (info) => this.emit('reboot', info));
    this.session.on('awake', () => void this.afterWake());
    // Still lost and the new connection carried nothing back: the path is still out; try a fresh one.
    this.session.on('unanswered', (cause) => {
      if (this.reopenOnLost) this.reopen(`reopening: ${cause}`);
    });
  }

  get state() {
    return this.session.state;
  }

  private get tracker(): FirmataCommandTracker {
    if (this.trackerValue === null) {
      const tracker = new FirmataCommandTracker();
      tracker.onFirmwareQuery = () => {
        this.firmwareQueries.push(this.clock.now());
        this.lastFirmwareTrafficAt = this.clock.now();
      };
      this.trackerValue = tracker;
    }
    return this.trackerValue;
  }

  private get queue(): BoundedQueue<number[]> {
    this.queueValue ??= new BoundedQueue<number[]>({
      capacity: this.options.queueCapacity ?? 256,
      onDrop: () => this.log.warn({ dropped: this.queue.dropped }, 'queue for the sleeping device is full: dropped the oldest write'),
    });
    return this.queueValue;
  }

  /** True while the port is lent out (pause() until resume()). */
  get isPaused(): boolean {
    return this.paused;
  }

  /** The pin configuration and registers the host has set, as it will be replayed. */
  get record(): PinRecord {
    return this.tracker.record;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    void this.keepTraffic?.start();
    this.transport.start();
  }

  /** Resolves once the device is `ready` (rejects after `timeoutMs`). */
  async ready(timeoutMs = 10_000): Promise<void> {
    if (this.session.state === 'ready') return;
    await this.nextState('ready', timeoutMs);
  }

  /** Resolves with the next change to `state` (rejects after `timeoutMs`, naming the state it is in). */
  nextState(state: SessionState, timeoutMs = 10_000): Promise<StateChange> {
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.session.off('state', onState);
        reject(new Error(`${this.options.target}: not ${state} within ${timeoutMs} ms (state ${this.session.state})`));
      }, timeoutMs);
      const onState = (change: StateChange) => {
        if (change.to !== state) return;
        this.clock.clearTimeout(timer);
        this.session.off('state', onState);
        resolve(change);
      };
      this.session.on('state', onState);
    });
  }

  /** Firmata bytes from the program: recorded for replay, queued while the device sleeps. */
  writeFirmata(bytes: Uint8Array | readonly number[]): void {
    const data = Array.from(bytes);
    this.tracker.observe(data);
    const state = this.session.state;
    if (state === 'sleeping' || this.resending) {
      this.queue.push(data);
      this.session.wake();
      return;
    }
    if (state !== 'ready') this.missedWrites = true;
    else {
      this.noteUnconfirmed(data);
      this.session.hurry(); // a board sending BEATs is PINGed seldom: its PONG confirms the write within an interval
    }
    this.transport.write(Uint8Array.from(data));
  }

  /** Keeps the device awake until the lease is released (or its ttl ends). */
  acquireLease(name: string, ttlMs?: number): Lease {
    return this.leases.acquire(name, ttlMs === undefined ? undefined : { ttlMs });
  }

  /** Writes state registers on the device (recorded, replayed after a power cycle). */
  async writeState(offset: number, data: Uint8Array): Promise<void> {
    checkRange(offset, data.length);
    for (let i = 0; i < data.length; i++) this.tracker.record.registers.set(offset + i, data[i]!);
    for (const [start, chunk] of registerRuns(new Map([...data].map((b, i) => [offset + i, b])))) {
      await this.request({ type: 'state-write', offset: start, data: chunk }, (m) => m.type === 'state-data' && m.offset === start);
    }
  }

  async readState(offset: number, length: number): Promise<Uint8Array> {
    checkRange(offset, length);
    const out = new Uint8Array(length);
    for (let done = 0; done < length; done += 16) {
      const n = Math.min(16, length - done);
      const reply = await this.request(
        { type: 'state-read', offset: offset + done, length: n },
        (m) => m.type === 'state-data' && m.offset === offset + done,
      );
      if (reply.type === 'state-data') out.set(reply.data, done);
    }
    return out;
  }

  stats(): DeviceLinkStats {
    const s = this.session;
    return {
      target: this.options.target,
      state: s.state,
      protocol: s.protocol,
      bootId: s.bootId,
      rttMs: { last: s.rtt.count ? s.rtt.last : null, p50: s.rtt.count ? s.rtt.p50 : null, p99: s.rtt.count ? s.rtt.p99 : null },
      lastSeen: s.lastSeen,
      reboots: { ...s.counters.reboots },
      replays: this.replays,
      resends: this.resends,
      verifications: this.verifications,
      queueDepth: this.queueValue?.size ?? 0,
      queueDropped: this.queueValue?.dropped ?? 0,
      pingsSent: s.counters.pingsSent,
      pongs: s.counters.pongs,
      beats: s.counters.beats,
      lostCount: s.counters.lostCount,
      asleepMs: s.counters.asleepMs,
      keepTraffic: this.keepTraffic?.stats ?? null,
    };
  }

  /**
   * Lends the port out (e.g. to a flasher): the session goes to `init` with `cause` (not
   * `lost`) and the port is closed until resume().
   */
  async pause(cause: string): Promise<void> {
    if (this.closed || this.paused) return;
    this.paused = true;
    this.keepTraffic?.linkDown();
    this.session.pause(cause);
    await this.transport.stop();
  }

  /** Takes the port back: reopen, handshake, replay or verify, then `ready`. */
  resume(): void {
    if (this.closed || !this.paused) return;
    this.paused = false;
    this.transport.start();
  }

  /** Leaves on purpose: the session becomes `disconnected`, no timers or handles remain. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.keepTraffic?.stop();
    this.session.close();
    this.leases.close();
    this.pending?.clear();
    if (this.replyWaiters !== null) for (const timer of this.replyWaiters.values()) this.clock.clearTimeout(timer);
    this.replyWaiters?.clear();
    await this.transport.stop();
  }

  // ---- inside ---------------------------------------------------------------------------

  /**
   * Each RTT sample, as the 'rtt' event gives them, called directly: the metrics hear every
   * PONG of every board, and an emit makes an argument array each time (through the domain
   * module's emit, once anything loaded it). Returns the function that stops it.
   */
  onRttSample(listener: (ms: number) => void): () => void {
    const listeners = (this.rttListeners ??= []);
    listeners.push(listener);
    return () => {
      const i = listeners.indexOf(listener);
      if (i >= 0) listeners.splice(i, 1);
    };
  }

  private rttSample(ms: number): void {
    const listeners = this.rttListeners;
    if (listeners !== null) for (let i = 0; i < listeners.length; i++) listeners[i]!(ms);
    if (this.listenerCount('rtt') > 0) this.emit('rtt', ms);
  }

  /** What the splitter finds in the board's bytes, in stream order. */
  private readonly sink: SplitterSink = {
    message: (message) => this.onDeviceMessage(message as DeviceMessage),
    pong: (fields) => this.onPong(fields),
    firmata: (bytes) => {
      for (const reply of (this.replies ??= new FirmataReplyReader()).push(bytes)) this.onFirmataReply(reply);
      this.emit('firmata', Buffer.from(bytes));
    },
    error: (error) => this.log.debug({ code: error.code }, `bad keepalive frame from the device: ${error.message}`),
  };

  private onDeviceMessage(message: DeviceMessage): void {
    if (message.type === 'pong') {
      this.confirmWrites(message.seq);
      this.keepTraffic?.pong(message.seq);
    } else if (message.type === 'sleeping') this.writesMayBeLost('sleep');
    this.session.receive(message);
    this.answerPending(message);
    this.emit('message', message);
  }

  /**
   * The PONG or BEAT every board sends every interval, as its fields: the same steps as any message,
   * but the message object is made only for someone waiting for one or listening.
   */
  private onPong(fields: PongFields): void {
    if (fields.beat) {
      // The board's own heartbeat: it answers no PING, so it confirms nothing.
      this.session.receiveBeat(fields.bootId);
    } else {
      const seq = fields.seq;
      this.confirmWrites(seq);
      this.keepTraffic?.pong(seq);
      this.session.receivePong(seq, fields.bootId);
    }
    if ((this.pending === null || this.pending.size === 0) && this.listenerCount('message') === 0) return;
    const message = pongMessage(fields);
    this.answerPending(message);
    this.emit('message', message);
  }

  private answerPending(message: DeviceMessage): void {
    const pending = this.pending;
    // Deleting the entry being visited is safe in a Set: no copy per message.
    if (pending !== null && pending.size > 0) for (const match of pending) if (match(message)) pending.delete(match);
  }

  /**
   * A whole Firmata message from the board: contact, and for plain Firmata boards, news. A
   * firmware name nobody asked for is its announcement at boot. When the program asked for one
   * but not lately (its query waited through a boot, or was lost in one), or had one answered
   * lately, an announcement and an answer cannot be told apart: then the board's pins are
   * checked instead of taking either on trust.
   */
  private onFirmataReply(reply: FirmataReply): void {
    this.session.firmataActivity(reply.kind === 'version' ? 'version' : 'other');
    if (reply.kind === 'firmware') {
      const now = this.clock.now();
      const query = this.firmwareQueries.shift();
      const recentTraffic = now - this.lastFirmwareTrafficAt < FIRMWARE_ANSWER_MS;
      if (query !== undefined) this.lastFirmwareTrafficAt = now;
      if (query === undefined && !recentTraffic) this.session.firmataBooted();
      else if (query === undefined || now - query >= FIRMWARE_ANSWER_MS) this.session.firmataCheck();
      // else: the answer to a query of the program's
    }
    // One reply answers one query: the oldest waiter it matches (answers come in query order).
    const waiters = this.replyWaiters;
    if (waiters !== null) for (const waiter of waiters.keys()) {
      if (waiter(reply)) {
        waiters.delete(waiter);
        break;
      }
    }
  }

  /** Resolves with the first Firmata reply that `match`es (rejects after the request timeout). */
  private nextReply(match: (reply: FirmataReply) => boolean, what: string): Promise<FirmataReply> {
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.replyWaiters?.delete(waiter);
        reject(new Error(`${this.options.target}: no ${what} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      const waiter = (reply: FirmataReply) => {
        if (!match(reply)) return false;
        this.clock.clearTimeout(timer);
        resolve(reply);
        return true;
      };
      (this.replyWaiters ??= new Map()).set(waiter, timer);
    });
  }

  private sendFrame(message: HostMessage): void {
    if (message.type === 'ping') this.sendPing(message.seq, message.leaseMs);
    else {
      // BEATS is a PING too (answered by a PONG with its seq), sent seldom: the general encoder.
      if (message.type === 'beats') this.pingLeaving(message.seq);
      this.transport.write(encodeFrame(message));
    }
  }

  /** A PING (every interval, every board): its own encoder, into a reused buffer while that is safe. */
  private sendPing(seq: number, leaseMs: number): void {
    this.pingLeaving(seq);
    // A buffer of its own, not a slice of Node's 8 KiB pool: kept for reuse, a slice would keep its whole slab alive.
    const frame = encodePingInto(this.pingFrame ?? Buffer.allocUnsafeSlow(PING_FRAME_LENGTH), seq, leaseMs);
    this.transport.write(frame);
    // Reused only if the socket handed it to the kernel at once; queued, it is still referenced: a fresh one next time.
    this.pingFrame = this.transport.pendingWriteBytes === 0 ? frame : null;
  }

  /** A PING or BEATS goes out: what its PONG will confirm, and the keep-traffic's record. */
  private pingLeaving(seq: number): void {
    // Only a PING sent after unconfirmed writes can confirm any (writes are numbered in order).
    if (this.unconfirmed.length > 0) {
      const marks = (this.pingMarks ??= new Map());
      marks.set(seq, this.writesSent);
      if (marks.size > MAX_PING_MARKS) marks.delete(marks.keys().next().value!);
    }
    this.keepTraffic?.pingSent(seq, Math.round(this.transport.silenceMs));
  }

  private onState(change: StateChange): void {
    // A write no PONG confirmed may have died with the link (or met a hung MCU): the handshake
    // that follows sends again what such writes touched, and what a sleep may have taken.
    if (change.to === 'lost' || change.to === 'init') this.writesMayBeLost('loss');
    if (change.to === 'ready') {
      this.transport.markHealthy();
      this.flushQueue();
    }
    if (change.to === 'lost' && change.from === 'ready' && this.transport.isUp) this.keepTraffic?.lostWithLinkOpen();
    this.emit('state', change);
    if (change.to === 'ready') this.keepTraffic?.activity();
    // Lost with the transport still open: the path may have forgotten the connection. A
    // fresh one heals it as soon as the path works again (the old one may never recover).
    if (change.to === 'lost' && this.reopenOnLost) this.reopen(`reopening: board lost with the connection open (${change.cause})`);
  }

  /** Closes the connection although it looks open and opens a fresh one (nothing if not up, paused or closed). */
  private reopen(reason: string): void {
    if (this.paused || this.closed || !this.transport.isUp) return;
    this.reopening = true;
    try {
      this.transport.recycle(reason);
    } finally {
      this.reopening = false;
    }
  }

  private flushQueue(): void {
    if (this.resending || this.queueValue === null) return; // afterWake() flushes once the older state is back
    for (const data of this.queueValue.drain()) this.transport.write(Uint8Array.from(data));
  }

  private noteUnconfirmed(bytes: number[]): void {
    this.unconfirmed.push({ n: ++this.writesSent, bytes });
    if (this.unconfirmed.length > MAX_UNCONFIRMED_WRITES) {
      const oldest = this.unconfirmed.shift()!;
      const overflowed = (this.overflowed ??= { touched: new FirmataCommandTracker(), upTo: 0, count: 0 });
      overflowed.touched.observe(oldest.bytes);
      overflowed.upTo = oldest.n;
      overflowed.count++;
    }
  }

  /** A PONG: the writes sent before its PING were read by the board. */
  private confirmWrites(seq: number): void {
    const marks = this.pingMarks;
    if (marks === null || marks.size === 0) return;
    const mark = marks.get(seq);
    if (mark === undefined) return;
    for (const s of marks.keys()) {
      marks.delete(s);
      if (s === seq) break;
    }
    if (this.overflowed !== null && mark >= this.overflowed.upTo) this.overflowed = null;
    // Once per PONG per board: nothing allocated when there is nothing to confirm (the usual case).
    const unconfirmed = this.unconfirmed;
    if (unconfirmed.length === 0) return;
    let firstUnconfirmed = 0;
    while (firstUnconfirmed < unconfirmed.length && unconfirmed[firstUnconfirmed]!.n <= mark) firstUnconfirmed++;
    if (firstUnconfirmed > 0) unconfirmed.splice(0, firstUnconfirmed);
  }

  /**
   * Writes no PONG confirmed may never have been read, and which of them cannot be known:
   * - `sleep` (SLEEPING): the board powered down right after sending it. A write sent before it
   *   arrived met the sleeping MCU, whose UART is off: its first byte only wakes it and the
   *   rest is garbage.
   * - `loss` (the link went lost): the bytes may have died with the connection, or met an MCU
   *   that hung as they came (its UART overruns while nothing reads it).
   * What they touched is sent again once the board is back (AWAKE, or the handshake when the
   * board kept its state; a reboot replays everything anyway): the last commanded values
   * (idempotent on the board), never the raw writes (a query or an I2C write is not
   * idempotent). Pin modes are not idempotent either (setting one resets the pin's value, a
   * glitch on an output): they are checked first and sent again only where they differ.
   */
  private writesMayBeLost(cause: 'sleep' | 'loss'): void {
    if (this.unconfirmed.length === 0 && this.overflowed === null) return;
    // The overflowed ones are the oldest: folded in first, so later writes win.
    const touched = this.overflowed?.touched ?? new FirmataCommandTracker();
    for (const w of this.unconfirmed) touched.observe(w.bytes);
    const writes = this.unconfirmed.length + (this.overflowed?.count ?? 0);
    this.overflowed = null;
    this.unconfirmed = [];
    this.pingMarks?.clear();
    // Values as commanded by now (writes made later follow them: queued while the board sleeps).
    const t = touched.record;
    const now = this.tracker.record;
    const all = this.mayBeLost ?? emptyPinRecord();
    for (const pin of t.modes.keys()) if (now.modes.has(pin)) all.modes.set(pin, now.modes.get(pin)!);
    for (const port of t.digitalPorts.keys()) if (now.digitalPorts.has(port)) all.digitalPorts.set(port, now.digitalPorts.get(port)!);
    for (const pin of t.analogWrites.keys()) if (now.analogWrites.has(pin)) all.analogWrites.set(pin, now.analogWrites.get(pin)!);
    for (const c of t.analogReporting) if (now.analogReporting.has(c)) all.analogReporting.add(c);
    for (const p of t.digitalReporting) if (now.digitalReporting.has(p)) all.digitalReporting.add(p);
    if (t.samplingIntervalMs !== null) all.samplingIntervalMs = now.samplingIntervalMs;
    if (isPinRecordEmpty(all)) return;
    this.mayBeLost = all;
    this.log.info(
      { writes },
      cause === 'sleep'
        ? 'the board went to sleep with writes unconfirmed: sending their state again when it wakes'
        : 'the link was lost with writes unconfirmed: sending their state again when the board is back',
    );
  }

  /**
   * Sends again what writesMayBeLost() kept: modes only where the board's differ (PIN_STATE),
   * then the values. `modesVerified`: the caller already checked every mode. `newerSent`: writes
   * made since went straight out (a handshake, not a wake, whose queue follows): a value
   * changed since is left out, so the older one does not overtake the newer. No answer to the
   * pin check (the board is not listening: asleep again, or gone): the next handshake replays all.
   */
  private async resendMayBeLost({ modesVerified, newerSent, after }: { modesVerified: boolean; newerSent: boolean; after: 'wake' | 'handshake' }): Promise<void> {
    const kept = this.mayBeLost;
    this.mayBeLost = null;
    if (kept === null) return;
    const now = this.tracker.record;
    const current = <V>(key: number, value: V, from: Map<number, V>) => !newerSent || from.get(key) === value;
    const resend = emptyPinRecord();
    if (!modesVerified && kept.modes.size > 0) {
      const checks = [...kept.modes].sort((a, b) => a[0] - b[0]).map(([pin, mode]) => ({ pin, mode, state: undefined }));
      let differ: Set<number>;
      try {
        differ = new Set((await this.pinMismatches(checks)).map((m) => m.pin));
      } catch (err) {
        this.missedWrites = true;
        this.log.warn({ err: (err as Error).message }, `could not check the pins after the ${after}: replaying at the next handshake`);
        return;
      }
      for (const [pin, mode] of kept.modes) if (differ.has(pin) && current(pin, mode, now.modes)) resend.modes.set(pin, mode);
    }
    for (const [port, value] of kept.digitalPorts) if (current(port, value, now.digitalPorts)) resend.digitalPorts.set(port, value);
    for (const [pin, value] of kept.analogWrites) if (current(pin, value, now.analogWrites)) resend.analogWrites.set(pin, value);
    for (const c of kept.analogReporting) if (!newerSent || now.analogReporting.has(c)) resend.analogReporting.add(c);
    for (const p of kept.digitalReporting) if (!newerSent || now.digitalReporting.has(p)) resend.digitalReporting.add(p);
    if (!newerSent || kept.samplingIntervalMs === now.samplingIntervalMs) resend.samplingIntervalMs = kept.samplingIntervalMs;
    const commands = replayCommands(resend);
    if (commands.length === 0) return;
    this.resends++;
    this.log.info({ bytes: commands.length, modes: resend.modes.size }, 'sending again the state that unconfirmed writes may have missed');
    this.transport.write(Uint8Array.from(commands));
  }

  /** AWAKE: what may have been lost to the sleep first (see writesMayBeLost), then the queue. */
  private async afterWake(): Promise<void> {
    if (this.mayBeLost !== null && !this.resending) {
      this.resending = true;
      try {
        await this.resendMayBeLost({ modesVerified: false, newerSent: false, after: 'wake' });
      } finally {
        this.resending = false;
      }
    }
    this.flushQueue();
  }

  /** Sends a request and resolves with the first device message that `match`es. */
  private async request(message: HostMessage, match: (m: DeviceMessage) => boolean): Promise<DeviceMessage> {
    // A sleeping board loses what arrives while it wakes: wake it and wait for AWAKE first.
    if (this.session.state === 'sleeping') await this.wakeUp();
    return await new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.pending?.delete(matcher);
        reject(new Error(`${this.options.target}: no answer to ${message.type} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      const matcher = (m: DeviceMessage) => {
        if (!match(m)) return false;
        this.clock.clearTimeout(timer);
        resolve(m);
        return true;
      };
      (this.pending ??= new Set()).add(matcher);
      this.sendFrame(message);
    });
  }

  /** Wakes a sleeping board and resolves on its AWAKE (or after the request timeout). */
  private wakeUp(): Promise<void> {
    return new Promise((resolve) => {
      const finish = () => {
        this.clock.clearTimeout(timer);
        this.session.off('awake', finish);
        resolve();
      };
      const timer = this.clock.setTimeout(finish, this.requestTimeoutMs);
      this.session.once('awake', finish);
      this.session.wake();
    });
  }


  /**
   * After a handshake: replay what the program configured if the device forgot it
   * (power cycle, brown-out, or writes it missed), verify it if the device says it kept it.
   */
  private async restore(hello: Hello, rebooted: boolean): Promise<void> {
    const record = this.trackerValue?.record;
    const hasRecord = record !== undefined && (!isPinRecordEmpty(record) || record.registers.size > 0);
    if (!hasRecord) {
      this.missedWrites = false;
      this.mayBeLost = null;
      return;
    }
    // A board that cannot restore pins (e.g. Espruino) is fine with state survived alone.
    const kept = hello.stateSurvived && (hello.pinsRestored || !hello.capabilities.pinRestore);
    let replay = this.missedWrites || (rebooted && !kept);
    if (!replay && rebooted) {
      // The device says it kept its state (watchdog/external reset): check the registers.
      this.verifications++;
      replay = !(await this.registersMatch());
      if (replay) this.log.warn({}, 'device kept state but registers differ from the record: replaying');
    }
    if (!replay) {
      // It kept its state: what writes lost with the link touched goes again.
      await this.resendMayBeLost({ modesVerified: false, newerSent: true, after: 'handshake' });
      return;
    }
    this.missedWrites = false;
    this.mayBeLost = null; // all of it follows
    this.replays++;
    const commands = replayCommands(record);
    this.log.info({ bytes: commands.length, registers: record.registers.size, bootId: hello.bootId }, 'replaying pin state and registers');
    if (commands.length > 0) this.transport.write(Uint8Array.from(commands));
    for (const [offset, chunk] of registerRuns(record.registers)) {
      await this.request({ type: 'state-write', offset, data: chunk }, (m) => m.type === 'state-data' && m.offset === offset);
    }
  }

  /**
   * A plain Firmata board after contact (`rebooted` false: check) or after it announced a
   * reboot (replay). Checking asks PIN_STATE of every pin the program configured and compares
   * mode and output value with the record; any difference means it forgot: replay. Then a
   * query sent after everything else is answered only once the board has applied it all (it
   * handles its input in order): then, and only then, it is restored.
   */
  private async restorePlain(rebooted: boolean): Promise<{ forgot: boolean }> {
    const generation = ++this.plainRestores;
    const superseded = () => {
      if (generation !== this.plainRestores) throw new Error('superseded by a newer restore');
    };
    const record = this.tracker.record;
    this.missedWrites = false; // writes reached it unless it rebooted, which is found out below
    let forgot = false;
    if (!rebooted) {
      const checks = pinChecks(record);
      if (checks.length > 0) {
        this.verifications++;
        const mismatch = await this.firstPinMismatch(checks);
        superseded();
        if (mismatch) {
          this.log.warn({ ...mismatch }, 'the board does not have the pin configuration the program set (it reset meanwhile?): replaying');
          forgot = true;
        }
      }
    }
    const commands = rebooted || forgot ? replayCommands(record) : [];
    // Every mode and output was just checked: what else unconfirmed writes touched (reporting, sampling) goes again.
    if (rebooted || forgot) this.mayBeLost = null;
    else await this.resendMayBeLost({ modesVerified: true, newerSent: true, after: 'handshake' });
    superseded();
    if (commands.length > 0) {
      this.replays++;
      this.log.info({ bytes: commands.length }, 'replaying pin modes, outputs and reporting to the plain Firmata board');
      this.transport.write(Uint8Array.from(commands));
    }
    const barrierPin = [...record.modes.keys()].sort((a, b) => a - b)[0];
    if (barrierPin !== undefined) {
      const answer = this.nextReply((r) => r.kind === 'pin-state' && r.pin === barrierPin, `pin ${barrierPin} state`);
      this.transport.write(Uint8Array.from([START_SYSEX, PIN_STATE_QUERY, barrierPin, END_SYSEX]));
      await answer;
    } else {
      const answer = this.nextReply((r) => r.kind === 'version', 'version report');
      this.transport.write(Uint8Array.from([REPORT_VERSION]));
      await answer;
    }
    superseded();
    return { forgot };
  }

  /** Asks each pin's state (all at once: answers come in order); the first that differs, if any. */
  private async firstPinMismatch(checks: PinCheck[]): Promise<{ pin: number; expected: string; actual: string } | null> {
    return (await this.pinMismatches(checks))[0] ?? null;
  }

  /** Asks each pin's state (all at once: answers come in order); those that differ. */
  private async pinMismatches(checks: PinCheck[]): Promise<Array<{ pin: number; expected: string; actual: string }>> {
    const answers = checks.map((check) => this.nextReply((r) => r.kind === 'pin-state' && r.pin === check.pin, `pin ${check.pin} state`));
    for (const check of checks) this.transport.write(Uint8Array.from([START_SYSEX, PIN_STATE_QUERY, check.pin, END_SYSEX]));
    const replies = await Promise.all(answers);
    const out: Array<{ pin: number; expected: string; actual: string }> = [];
    for (const [i, check] of checks.entries()) {
      const reply = replies[i]!;
      if (reply.kind !== 'pin-state') continue;
      if (reply.mode !== check.mode || (check.state !== undefined && reply.state !== check.state)) {
        out.push({ pin: check.pin, expected: `mode ${check.mode} state ${check.state ?? 'any'}`, actual: `mode ${reply.mode} state ${reply.state}` });
      }
    }
    return out;
  }

  private async registersMatch(): Promise<boolean> {
    for (const [offset, chunk] of registerRuns(this.tracker.record.registers)) {
      const reply = await this.request(
        { type: 'state-read', offset, length: chunk.length },
        (m) => m.type === 'state-data' && m.offset === offset,
      );
      if (reply.type !== 'state-data' || !chunk.every((b, i) => reply.data[i] === b)) return false;
    }
    return true;
  }
}

function isTcpTarget(target: string): boolean {
  try {
    return parseTarget(target).kind === 'tcp';
  } catch {
    return false;
  }
}

/** The pins the program configured, with what PIN_STATE should say of each. */
function pinChecks(record: PinRecord): PinCheck[] {
  return [...record.modes]
    .sort((a, b) => a[0] - b[0])
    .map(([pin, mode]) => {
      let state: number | undefined;
      if (mode === MODE_OUTPUT) {
        const port = record.digitalPorts.get(pin >> 3);
        state = port === undefined ? undefined : (port >> (pin & 7)) & 1;
      } else if (mode === MODE_PWM) {
        state = record.analogWrites.get(pin);
      }
      return { pin, mode, state };
    });
}

function checkRange(offset: number, length: number): void {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 1 || offset + length > STATE_SIZE) {
    throw new RangeError(`state registers are 0-${STATE_SIZE - 1}: offset ${offset} length ${length} is outside`);
  }
}
