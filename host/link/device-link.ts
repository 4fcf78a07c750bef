import { EventEmitter } from 'node:events';
import { encodeFrame, FrameSplitter } from '../../shared/protocol/index.ts';
import type { DeviceMessage, HostMessage } from '../../shared/protocol/messages.ts';
import { STATE_SIZE } from '../../shared/protocol/constants.ts';
import { FirmataCommandTracker } from '../firmata/firmata-command-tracker.ts';
import { isPinRecordEmpty, type PinRecord } from '../firmata/pin-record.ts';
import { registerRuns, replayCommands } from '../firmata/replay.ts';
import { silentLogger, type Logger } from '../log/logger.ts';
import { BoundedQueue } from '../session/command-queue.ts';
import { DeviceSession, type DeviceSessionOptions, type Hello, type RebootInfo, type SessionState, type StateChange } from '../session/device-session.ts';
import { LeaseRegistry, type Lease } from '../session/lease-registry.ts';
import { systemClock, type Clock } from '../time/clock.ts';
import { createTransport } from '../transport/create-transport.ts';
import { ReconnectingTransport } from '../transport/reconnecting-transport.ts';
import type { Transport } from '../transport/transport.ts';

export interface DeviceLinkOptions {
  /** Serial device path (`/dev/ttyACM0`) or a serial-over-TCP bridge (`tcp://host:port`). */
  target: string;
  baudRate?: number;
  clock?: Clock;
  logger?: Logger;
  /** Session timing and device configuration (ping interval, misses, detector, ...). */
  session?: Omit<DeviceSessionOptions, 'send' | 'sendRaw' | 'restore' | 'clock' | 'logger' | 'leases'>;
  /** Writes held for a sleeping device before the oldest are dropped (default 256). */
  queueCapacity?: number;
  /** Reconnect backoff (defaults: 250 ms doubling to 30 s, full jitter). */
  backoff?: { initialMs?: number; maxMs?: number };
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
  verifications: number;
  queueDepth: number;
  queueDropped: number;
  pingsSent: number;
  pongs: number;
  lostCount: number;
  asleepMs: number;
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
  private readonly tracker = new FirmataCommandTracker();
  private readonly queue: BoundedQueue<number[]>;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly requestTimeoutMs: number;
  /** Writes that may not have reached the device (sent while it was not ready): replay on recovery. */
  private missedWrites = false;
  private replays = 0;
  private verifications = 0;
  private readonly pending = new Set<(m: DeviceMessage) => boolean>();
  private started = false;
  private closed = false;
  /** Paused on purpose (the port is lent out): a transport going down is not an outage. */
  private paused = false;

  constructor(readonly options: DeviceLinkOptions) {
    super();
    this.clock = options.clock ?? systemClock;
    this.log = (options.logger ?? silentLogger).child({ port: options.target });
    this.requestTimeoutMs = options.requestTimeoutMs ?? 3000;
    this.leases = new LeaseRegistry({ clock: this.clock });
    this.queue = new BoundedQueue<number[]>({
      capacity: options.queueCapacity ?? 256,
      onDrop: () => this.log.warn({ dropped: this.queue.dropped }, 'queue for the sleeping device is full: dropped the oldest write'),
    });
    this.session = new DeviceSession({
      ...options.session,
      clock: this.clock,
      logger: this.log,
      leases: this.leases,
      send: (message) => this.sendFrame(message),
      sendRaw: (bytes) => this.transport.write(Uint8Array.from(bytes)),
      restore: (hello, rebooted) => this.restore(hello, rebooted),
    });
    const factory =
      options.transportFactory ?? (() => createTransport(options.target, { baudRate: options.baudRate, logger: this.log }));
    this.transport = new ReconnectingTransport(factory, {
      clock: this.clock,
      logger: this.log,
      backoff: { initialMs: options.backoff?.initialMs ?? 250, maxMs: options.backoff?.maxMs ?? 30_000 },
    });
    this.transport.on('up', () => {
      this.session.linkUp();
      this.emit('up');
    });
    this.transport.on('down', (error) => {
      if (this.paused) return;
      this.session.linkDown(error.message);
      this.emit('down', error.message);
    });
    this.transport.on('data', (bytes) => this.receive(bytes));
    this.session.on('state', (change) => this.onState(change));
    this.session.on('reboot', (info) => this.emit('reboot', info));
    this.session.on('rtt', (ms) => this.emit('rtt', ms));
    this.session.on('awake', () => this.flushQueue());
  }

  get state() {
    return this.session.state;
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
    if (state === 'sleeping') {
      this.queue.push(data);
      this.session.wake();
      return;
    }
    if (state !== 'ready') this.missedWrites = true;
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
      verifications: this.verifications,
      queueDepth: this.queue.size,
      queueDropped: this.queue.dropped,
      pingsSent: s.counters.pingsSent,
      pongs: s.counters.pongs,
      lostCount: s.counters.lostCount,
      asleepMs: s.counters.asleepMs,
    };
  }

  /**
   * Lends the port out (e.g. to a flasher): the session goes to `init` with `cause` (not
   * `lost`) and the port is closed until resume().
   */
  async pause(cause: string): Promise<void> {
    if (this.closed || this.paused) return;
    this.paused = true;
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
    this.session.close();
    this.leases.close();
    this.pending.clear();
    await this.transport.stop();
  }

  // ---- inside ---------------------------------------------------------------------------

  private receive(bytes: Buffer): void {
    for (const event of this.splitter.push(bytes)) {
      if (event.kind === 'message') {
        const message = event.message as DeviceMessage;
        this.session.receive(message);
        for (const match of [...this.pending]) if (match(message)) this.pending.delete(match);
        this.emit('message', message);
      } else if (event.kind === 'firmata') {
        this.session.firmataActivity();
        this.emit('firmata', Buffer.from(event.bytes));
      } else {
        this.log.debug({ code: event.error.code }, `bad keepalive frame from the device: ${event.error.message}`);
      }
    }
  }

  private sendFrame(message: HostMessage): void {
    this.transport.write(encodeFrame(message));
  }

  private onState(change: StateChange): void {
    if (change.to === 'ready') this.flushQueue();
    this.emit('state', change);
  }

  private flushQueue(): void {
    for (const data of this.queue.drain()) this.transport.write(Uint8Array.from(data));
  }

  /** Sends a request and resolves with the first device message that `match`es. */
  private async request(message: HostMessage, match: (m: DeviceMessage) => boolean): Promise<DeviceMessage> {
    // A sleeping board loses what arrives while it wakes: wake it and wait for AWAKE first.
    if (this.session.state === 'sleeping') await this.wakeUp();
    return await new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.pending.delete(matcher);
        reject(new Error(`${this.options.target}: no answer to ${message.type} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      const matcher = (m: DeviceMessage) => {
        if (!match(m)) return false;
        this.clock.clearTimeout(timer);
        resolve(m);
        return true;
      };
      this.pending.add(matcher);
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
    const record = this.tracker.record;
    const hasRecord = !isPinRecordEmpty(record) || record.registers.size > 0;
    if (!hasRecord) {
      this.missedWrites = false;
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
    if (!replay) return;
    this.missedWrites = false;
    this.replays++;
    const commands = replayCommands(record);
    this.log.info({ bytes: commands.length, registers: record.registers.size, bootId: hello.bootId }, 'replaying pin state and registers');
    if (commands.length > 0) this.transport.write(Uint8Array.from(commands));
    for (const [offset, chunk] of registerRuns(record.registers)) {
      await this.request({ type: 'state-write', offset, data: chunk }, (m) => m.type === 'state-data' && m.offset === offset);
    }
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

function checkRange(offset: number, length: number): void {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 1 || offset + length > STATE_SIZE) {
    throw new RangeError(`state registers are 0-${STATE_SIZE - 1}: offset ${offset} length ${length} is outside`);
  }
}
