import { EventEmitter } from 'node:events';
import { encodeFrame, FrameSplitter } from '../../shared/protocol/index.ts';
import { MessageType, STATE_SIZE } from '../../shared/protocol/constants.ts';
import type { DeviceConfig, DeviceMessage, HostMessage } from '../../shared/protocol/messages.ts';
import { systemClock, type Clock } from '../../host/time/clock.ts';

export interface SimulatedDeviceOptions {
  clock?: Clock;
  bootId?: number;
  name?: string;
  /** Analog value reported on A0 (raw 0-1023) when reporting is on, as a function of time. */
  analog?: (nowMs: number) => number;
  /** Report analog values this often whatever SAMPLING_INTERVAL the host sets (a fast board). */
  reportEveryMs?: number;
  /** Has the beats capability (sends BEATs when asked; default true). */
  beats?: boolean;
}

const FIRMWARE_NAME = 'tether-sim';
const PIN_COUNT = 20;

/**
 * A board at the protocol level, in TypeScript: it answers the keepalive extension (HELLO,
 * PING, BEATS, STATE, CONFIG) and enough Firmata for firmata.js and Johnny-Five's handshake
 * (version, firmware, capabilities, analog mapping, analog reporting). For benchmarks and
 * fleet tests where thousands of boards are needed; the AVR emulator is the faithful one.
 * Sleep and the watchdog are not modelled.
 */
export class SimulatedDevice extends EventEmitter<{ data: [Buffer] }> {
  private readonly clock: Clock;
  private readonly splitter = new FrameSplitter({ from: 'host' });
  private readonly registers = new Uint8Array(STATE_SIZE);
  private config: DeviceConfig = { watchdogMs: 2000, policy: 'stay', hostTimeoutMs: 0, sleepMs: 8000, awakeMs: 1000 };
  private readonly bootedAt: number;
  private readonly bootId: number;
  private leaseUntil = 0;
  private frozen = false;
  private readonly analogReporting = new Set<number>();
  private samplingMs: number;
  private reportTimer: ReturnType<Clock['setTimeout']> | undefined;
  private firmata: number[] = [];
  /** BEATS: the interval, until when, the seq that asked, and the next beat's timer. */
  private beatIntervalMs = 0;
  private beatsUntil = 0;
  private beatSeq = 0;
  private beatTimer: ReturnType<Clock['setTimeout']> | undefined;

  constructor(private readonly options: SimulatedDeviceOptions = {}) {
    super();
    this.clock = options.clock ?? systemClock;
    this.bootedAt = this.clock.now();
    this.bootId = options.bootId ?? 1;
    this.samplingMs = options.reportEveryMs ?? 19;
  }

  /** The host's bytes. */
  write(bytes: Uint8Array): void {
    if (this.frozen) return;
    for (const event of this.splitter.push(bytes)) {
      if (event.kind === 'message') this.onFrame(event.message as HostMessage);
      else if (event.kind === 'error') this.send({ type: 'error', code: 'bad-crc', offendingType: 0 });
      else this.onFirmata(event.bytes);
    }
  }

  /** Stops answering (a hung MCU), or answers again. */
  setFrozen(frozen: boolean): void {
    this.frozen = frozen;
  }

  /** Boot announcements, as the firmware sends them. */
  boot(): void {
    this.out([0xf9, 2, 5]);
    this.sendFirmwareName();
    this.send(this.hello(false));
  }

  close(): void {
    if (this.reportTimer !== undefined) this.clock.clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
    this.stopBeats();
  }

  private onFrame(m: HostMessage): void {
    const now = this.clock.now();
    switch (m.type) {
      case 'hello-request':
        this.send(this.hello(true));
        break;
      case 'ping':
      case 'beats':
        if (m.type === 'beats' && this.options.beats === false) {
          this.send({ type: 'error', code: 'unknown-type', offendingType: MessageType.BEATS });
          break;
        }
        this.leaseUntil = m.leaseMs > 0 ? now + m.leaseMs : 0;
        this.send(this.heartbeat('pong', m.seq, now));
        if (m.type === 'ping') break; // a plain PING leaves the beats as they are
        this.stopBeats();
        if (m.intervalMs > 0 && m.forMs > 0) {
          this.beatIntervalMs = m.intervalMs;
          this.beatsUntil = now + m.forMs;
          this.beatSeq = m.seq;
          this.beatTimer = this.clock.setTimeout(this.beat, m.intervalMs);
        }
        break;
      case 'state-write':
        this.registers.set(m.data, m.offset);
        this.send({ type: 'state-data', offset: m.offset, data: this.registers.slice(m.offset, m.offset + m.data.length) });
        break;
      case 'state-read':
        this.send({ type: 'state-data', offset: m.offset, data: this.registers.slice(m.offset, m.offset + m.length) });
        break;
      case 'config-set':
        this.config = { ...m.config };
        this.send({ type: 'config', config: this.config });
        break;
      case 'config-get':
        this.send({ type: 'config', config: this.config });
        break;
    }
  }

  /** Firmata commands: a small parser for what the handshake and analog reporting need. */
  private onFirmata(bytes: Uint8Array): void {
    for (const b of bytes) {
      if (b >= 0x80 && b !== 0xf7) this.firmata = [];
      if (b === 0x00 && this.firmata.length === 0) continue;
      this.firmata.push(b);
      const [cmd, a, c] = this.firmata as [number, number?, number?];
      if (cmd === 0xf9) {
        this.out([0xf9, 2, 5]);
        this.firmata = [];
      } else if (cmd === 0xf0 && b === 0xf7) {
        this.onSysex(this.firmata.slice(1, -1));
        this.firmata = [];
      } else if ((cmd & 0xf0) === 0xc0 && a !== undefined) {
        if (a) this.analogReporting.add(cmd & 0x0f);
        else this.analogReporting.delete(cmd & 0x0f);
        this.scheduleReports();
        this.firmata = [];
      } else if (cmd !== 0xf0 && this.firmata.length >= 3 && c !== undefined) {
        this.firmata = []; // other 3-byte commands: accepted, not modelled
      } else if (this.firmata.length > 64) {
        this.firmata = [];
      }
    }
  }

  private onSysex(body: number[]): void {
    switch (body[0]) {
      case 0x79:
        this.sendFirmwareName();
        break;
      case 0x6b: {
        const caps: number[] = [0xf0, 0x6c];
        for (let pin = 0; pin < PIN_COUNT; pin++) {
          if (pin >= 2) caps.push(0, 1, 1, 1, 0x0b, 1);
          if (pin >= 14) caps.push(2, 10);
          caps.push(0x7f);
        }
        caps.push(0xf7);
        this.out(caps);
        break;
      }
      case 0x69: {
        const map = [0xf0, 0x6a];
        for (let pin = 0; pin < PIN_COUNT; pin++) map.push(pin >= 14 ? pin - 14 : 0x7f);
        map.push(0xf7);
        this.out(map);
        break;
      }
      case 0x7a:
        if (this.options.reportEveryMs === undefined) this.samplingMs = Math.max(1, (body[1] ?? 19) | ((body[2] ?? 0) << 7));
        break;
    }
  }

  private scheduleReports(): void {
    if (this.reportTimer !== undefined || this.analogReporting.size === 0) return;
    const tick = () => {
      this.reportTimer = undefined;
      if (this.analogReporting.size === 0) return;
      if (!this.frozen) {
        const value = Math.max(0, Math.min(1023, Math.round(this.options.analog?.(this.clock.now()) ?? 512)));
        for (const channel of this.analogReporting) this.out([0xe0 | channel, value & 0x7f, value >> 7]);
      }
      this.reportTimer = this.clock.setTimeout(tick, this.samplingMs);
    };
    this.reportTimer = this.clock.setTimeout(tick, this.samplingMs);
  }

  /** A BEAT when due; the next one an interval later (a late beat is not made up), until the BEATS ran out. */
  private readonly beat = (): void => {
    this.beatTimer = undefined;
    const now = this.clock.now();
    if (now > this.beatsUntil) return;
    if (!this.frozen) this.send(this.heartbeat('beat', this.beatSeq, now));
    if (now + this.beatIntervalMs <= this.beatsUntil) this.beatTimer = this.clock.setTimeout(this.beat, this.beatIntervalMs);
  };

  private stopBeats(): void {
    if (this.beatTimer !== undefined) this.clock.clearTimeout(this.beatTimer);
    this.beatTimer = undefined;
  }

  private heartbeat(type: 'pong' | 'beat', seq: number, now: number): DeviceMessage {
    return {
      type,
      seq,
      uptimeMs: Math.floor(now - this.bootedAt) >>> 0,
      bootId: this.bootId,
      leaseActive: this.leaseUntil > now,
      sleepPending: false,
      stateValid: true,
      hostWasLost: false,
      leaseRemainingMs: Math.max(0, this.leaseUntil - now),
    };
  }

  private hello(reply: boolean): DeviceMessage {
    return {
      type: 'hello',
      fwMajor: 1,
      fwMinor: 0,
      bootId: this.bootId,
      resetCauses: ['power-on'],
      stateSurvived: false,
      pinsRestored: false,
      reply,
      watchdogMs: this.config.watchdogMs,
      policy: this.config.policy,
      hostTimeoutMs: this.config.hostTimeoutMs,
      capabilities: { watchdog: false, sleep: false, state: true, pinRestore: false, beats: this.options.beats !== false },
      stateSize: STATE_SIZE,
      name: this.options.name ?? FIRMWARE_NAME,
    };
  }

  private sendFirmwareName(): void {
    const name = [...FIRMWARE_NAME].flatMap((ch) => [ch.charCodeAt(0) & 0x7f, ch.charCodeAt(0) >> 7]);
    this.out([0xf0, 0x79, 1, 0, ...name, 0xf7]);
  }

  private send(message: DeviceMessage): void {
    this.out(encodeFrame(message));
  }

  private out(bytes: number[] | Uint8Array): void {
    if (this.frozen) return;
    this.emit('data', Buffer.from(bytes));
  }
}
