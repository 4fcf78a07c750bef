import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { DeviceLink } from '../../host/link/device-link.ts';
import type { Transport, TransportEvents } from '../../host/transport/transport.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { encodeFrame, FrameSplitter } from '../../shared/protocol/index.ts';
import type { DeviceMessage, HostMessage } from '../../shared/protocol/messages.ts';

/** A scripted device behind a fake transport: answers HELLO_REQUEST and PING, with noise. */
class FakeDevice extends EventEmitter<TransportEvents> implements Transport {
  readonly description = 'fake';
  isOpen = false;
  readonly received: HostMessage[] = [];
  readonly raw: number[] = [];
  noise: () => number[] = () => [];
  split = false;
  bootId = 5;
  private readonly splitter = new FrameSplitter({ from: 'host' });

  constructor(protected readonly clock: ManualClock) {
    super();
  }

  async open(): Promise<void> {
    this.isOpen = true;
  }
  async close(): Promise<void> {
    this.isOpen = false;
    this.emit('close', null);
  }
  write(bytes: Uint8Array): boolean {
    this.raw.push(...bytes);
    for (const e of this.splitter.push(bytes)) {
      if (e.kind !== 'message') continue;
      const m = e.message as HostMessage;
      this.received.push(m);
      if (m.type === 'hello-request') this.reply({ type: 'hello', fwMajor: 1, fwMinor: 0, bootId: this.bootId, resetCauses: ['power-on'], stateSurvived: false, pinsRestored: false, reply: true, watchdogMs: 2000, policy: 'stay', hostTimeoutMs: 0, capabilities: { watchdog: true, sleep: true, state: true, pinRestore: true, beats: false }, stateSize: 32, name: 'tether' });
      if (m.type === 'ping') this.reply({ type: 'pong', seq: m.seq, uptimeMs: 1, bootId: this.bootId, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 });
      if (m.type === 'state-write') this.reply({ type: 'state-data', offset: m.offset, data: m.data });
    }
    return true;
  }
  reply(message: DeviceMessage): void {
    const frame = [...this.noise(), ...encodeFrame(message), ...this.noise()];
    this.clock.setTimeout(() => {
      if (!this.split) return this.emit('data', Buffer.from(frame));
      // Byte by byte, as a slow serial line delivers it.
      frame.forEach((b, i) => this.clock.setTimeout(() => this.emit('data', Buffer.from([b])), i));
    }, 5);
  }
}

describe('DeviceLink (fake transport, fake time)', () => {
  function make() {
    const clock = new ManualClock();
    const device = new FakeDevice(clock);
    const link = new DeviceLink({ target: 'fake', clock, transportFactory: () => device, session: { pingIntervalMs: 100, misses: 3 } });
    const states: string[] = [];
    const firmata: number[] = [];
    link.on('state', (c) => states.push(c.to));
    link.on('firmata', (b) => firmata.push(...b));
    return { clock, device, link, states, firmata };
  }

  it('gets ready and stays ready with garbage between frames and frames split byte by byte', async () => {
    const { clock, device, link, states, firmata } = make();
    let n = 0;
    // Firmata-looking noise and stray bytes around every frame (no 0xF0, so frames stay whole).
    device.noise = () => [0x90 | (n++ % 3), 0x7f, 0x01, 0x33, 0xf9, 0x02];
    device.split = true;
    link.start();
    await clock.advanceAsync(5_000);
    expect(states).toEqual(['ready']);
    expect(link.stats().pongs).toBeGreaterThan(20);
    expect(firmata.length).toBeGreaterThan(0); // the noise went to the Firmata side, not into the session
    await link.close();
  });

  it("every RTT sample reaches onRttSample listeners and 'rtt' listeners alike, each until it stops listening", async () => {
    const { clock, link } = make();
    const direct: number[] = [];
    const emitted: number[] = [];
    const stop = link.onRttSample((ms) => direct.push(ms));
    link.on('rtt', (ms) => emitted.push(ms));
    link.start();
    await clock.advanceAsync(2_000);
    expect(direct.length).toBeGreaterThan(10);
    expect(direct).toEqual(emitted);
    expect(direct.every((ms) => ms === 5)).toBe(true); // the fake device answers after 5 ms
    stop();
    await clock.advanceAsync(1_000);
    expect(emitted.length).toBeGreaterThan(direct.length);
    expect(link.stats().pongs).toBe(emitted.length);
    await link.close();
  });

  it('records writes and replays them after a reboot that lost state', async () => {
    const { clock, device, link } = make();
    link.start();
    await clock.advanceAsync(500);
    link.writeFirmata([0xf4, 13, 1, 0xf5, 13, 1]);
    const writeDone = link.writeState(2, Uint8Array.from([7, 8]));
    await clock.advanceAsync(100);
    await writeDone;
    device.raw.length = 0;
    device.bootId = 6;
    device.reply({ type: 'hello', fwMajor: 1, fwMinor: 0, bootId: 6, resetCauses: ['power-on'], stateSurvived: false, pinsRestored: false, reply: false, watchdogMs: 2000, policy: 'stay', hostTimeoutMs: 0, capabilities: { watchdog: true, sleep: true, state: true, pinRestore: true, beats: false }, stateSize: 32, name: 'tether' });
    await clock.advanceAsync(200);
    const replayed = device.raw;
    expect(indexOfSeq(replayed, [0xf4, 13, 1])).toBeGreaterThanOrEqual(0);
    expect(indexOfSeq(replayed, [0x91, 0x20, 0x00])).toBeGreaterThanOrEqual(0); // pin 13 high on port 1
    expect(device.received.filter((m) => m.type === 'state-write').at(-1)).toMatchObject({ offset: 2, data: Uint8Array.from([7, 8]) });
    expect(link.stats().replays).toBe(1);
    expect(link.stats().reboots['power-on']).toBe(1);
    await link.close();
  });

  it('rejects out-of-range register access with a clear error', async () => {
    const { link } = make();
    await expect(link.writeState(30, Uint8Array.from([1, 2, 3]))).rejects.toThrow(/state registers are 0-31/);
    await expect(link.readState(-1, 1)).rejects.toThrow(RangeError);
    await link.close();
  });

  it('close() leaves no timers behind', async () => {
    const { clock, link } = make();
    link.start();
    await clock.advanceAsync(1_000);
    await link.close();
    await clock.advanceAsync(50);
    expect(clock.pending).toBe(0);
    expect(link.state).toBe('disconnected');
  });
});

/**
 * The tether firmware's sleep as seen from the serial line: after SLEEPING the MCU is powered
 * down, its UART off, so a write that arrives then is lost and its first byte only wakes it
 * (AWAKE). Awake, it applies pin modes and answers PIN_STATE queries (F0 6D pin F7) from them.
 */
class SleepyDevice extends FakeDevice {
  asleep = false;
  /** Firmata writes the device received while awake, in order (frames and queries left out). */
  readonly applied: number[][] = [];
  readonly modes = new Map<number, number>();

  sleep(): void {
    this.asleep = true;
    this.reply({ type: 'sleeping', durationMs: 0, wakeSources: ['serial'] });
  }

  override write(bytes: Uint8Array): boolean {
    if (this.asleep) {
      this.asleep = false;
      // The oscillator starts up, then AWAKE: later than the SLEEPING frame already on its way.
      this.clock.setTimeout(() => this.reply({ type: 'awake', sleptMs: 1, wakeCauses: ['serial'] }), 10);
      return true;
    }
    const data = [...bytes];
    if (data[0] === 0xf0 && data[1] === 0x6d) {
      const pin = data[2]!;
      const answer = [0xf0, 0x6e, pin, this.modes.get(pin) ?? 0x7e, 0, 0xf7];
      this.clock.setTimeout(() => this.emit('data', Buffer.from(answer)), 5);
      return true;
    }
    if (data[0] !== 0xf0 && !(data.length === 1 && data[0] === 0)) {
      // (a lone 0x00 is the host's wake byte)
      this.applied.push(data);
      for (let i = 0; i + 2 < data.length; i++) if (data[i] === 0xf4) this.modes.set(data[i + 1]!, data[i + 2]!);
    }
    return super.write(bytes);
  }
}

/** A DeviceLink on a scripted board, started and ready (PINGs every 100 ms, lost after 3 misses). */
async function readyLinkTo<D extends FakeDevice>(makeDevice: (clock: ManualClock) => D) {
  const clock = new ManualClock();
  const device = makeDevice(clock);
  const link = new DeviceLink({ target: 'fake', clock, transportFactory: () => device, session: { pingIntervalMs: 100, misses: 3 } });
  link.start();
  await clock.advanceAsync(1_000);
  expect(link.state).toBe('ready');
  return { clock, device, link };
}

describe('DeviceLink and a board that goes to sleep (scripted board, fake time)', () => {
  const readySleepy = () => readyLinkTo((clock) => new SleepyDevice(clock));

  it('a write sent to a ready board as it goes to sleep is sent again on AWAKE, before the queue; modes only where the board differs', async () => {
    const { clock, device, link } = await readySleepy();
    link.writeFirmata([0xf4, 12, 1]); // pin 12 output: confirmed by the next PONG
    await clock.advanceAsync(300);
    device.sleep(); // SLEEPING is on its way; the host still sees the board ready
    expect(link.state).toBe('ready');
    link.writeFirmata([0xf4, 13, 1, 0xf4, 12, 1, 0x91, 0x30, 0x00]); // pins 12 and 13 high: lost, it only wakes the board
    expect(device.asleep).toBe(false);
    const before = device.applied.length;
    await clock.advanceAsync(5); // SLEEPING arrives
    expect(link.state).toBe('sleeping');
    link.writeFirmata([0x91, 0x10, 0x00]); // pin 13 low: a fresh command, queued for the wake
    await clock.advanceAsync(500); // AWAKE, pin checks, re-send, queue
    const after = device.applied.slice(before);
    // Pin 13's mode is re-sent (the board lacks it), pin 12's is not (setting it again would reset it low).
    expect(after).toEqual([[0xf4, 13, 1, 0x91, 0x30, 0x00], [0x91, 0x10, 0x00]]);
    expect(device.modes.get(13)).toBe(1);
    await link.close();
  });

  it('writes a PONG confirmed before SLEEPING are not sent again on AWAKE', async () => {
    const { clock, device, link } = await readySleepy();
    link.writeFirmata([0xf4, 13, 1, 0x91, 0x20, 0x00]);
    await clock.advanceAsync(300); // PINGs sent after the write are answered: it was read
    device.sleep();
    await clock.advanceAsync(50);
    expect(link.state).toBe('sleeping');
    const before = device.applied.length;
    device.write(Uint8Array.from([0])); // woken from outside (its timer, in effect)
    await clock.advanceAsync(500);
    expect(link.state).toBe('ready');
    expect(device.applied.slice(before)).toEqual([]);
    await link.close();
  });
});

/** A board that hears nothing while `deaf` (a hung MCU, a dead line), then comes back without a reset. */
class DeafDevice extends SleepyDevice {
  deaf = false;
  /** Called as a PIN_STATE query arrives (a program writing meanwhile). */
  onQuery: (() => void) | null = null;

  override write(bytes: Uint8Array): boolean {
    if (this.deaf) return true;
    if (bytes[0] === 0xf0 && bytes[1] === 0x6d) this.onQuery?.();
    return super.write(bytes);
  }
}

describe('DeviceLink and writes lost with the link (scripted board, fake time)', () => {
  async function readyDeaf() {
    const { clock, device, link } = await readyLinkTo((c) => new DeafDevice(c));
    link.writeFirmata([0xf4, 12, 1, 0x91, 0x10, 0x00]); // pin 12 output, high: confirmed by the next PONG
    await clock.advanceAsync(300);
    return { clock, device, link };
  }

  /**
   * The board goes deaf, `lostWrites` are sent as to a ready board, the link is lost, the board
   * hears again (`onQuery` runs at its first PIN_STATE query): what it applied from then on.
   */
  async function throughLoss(rig: Awaited<ReturnType<typeof readyDeaf>>, lostWrites: number[][], onQuery: (() => void) | null = null) {
    const { clock, device, link } = rig;
    device.deaf = true;
    for (const write of lostWrites) link.writeFirmata(write);
    await clock.advanceAsync(1_000);
    expect(link.state).toBe('lost');
    const before = device.applied.length;
    device.onQuery = onQuery;
    device.deaf = false;
    await clock.advanceAsync(2_000);
    expect(link.state).toBe('ready');
    return device.applied.slice(before);
  }

  it('a write no PONG confirmed before the link was lost is sent again after the handshake with the board that kept its state; modes only where it differs', async () => {
    const rig = await readyDeaf();
    // Pin 13 output, high (12 stays high): never read.
    const applied = await throughLoss(rig, [[0xf4, 13, 1, 0x91, 0x30, 0x00]]);
    // Pin 13's mode is sent again (the board lacks it), pin 12's is not (setting it again would drive it low for a moment).
    expect(applied).toEqual([[0xf4, 13, 1, 0x91, 0x30, 0x00]]);
    expect(rig.link.stats()).toMatchObject({ resends: 1, replays: 0 });
    await rig.link.close();
  });

  it('a newer write sent while the pins are checked is not overtaken by the older value', async () => {
    const rig = await readyDeaf();
    const applied = await throughLoss(rig, [[0xf4, 13, 1, 0x91, 0x30, 0x00]], () => {
      rig.device.onQuery = null;
      rig.link.writeFirmata([0x91, 0x00, 0x00]); // the program turns port 1 off meanwhile
    });
    expect(applied).toEqual([[0x91, 0x00, 0x00], [0xf4, 13, 1]]);
    await rig.link.close();
  });

  it('in a flood of more unconfirmed writes than are kept one by one (1,024), the oldest still count', async () => {
    const rig = await readyDeaf();
    const flood = Array.from({ length: 1100 }, (_, v) => [0xe9, v & 0x7f, (v >> 7) & 0x7f]); // pin 9 PWM, 1,100 times
    // Port 0 (pin 2 high) first: the oldest, past the 1,024 kept one by one.
    expect(await throughLoss(rig, [[0x90, 0x04, 0x00], ...flood])).toEqual([[0x90, 0x04, 0x00, 0xe9, 1099 & 0x7f, 1099 >> 7]]);
    // The same flood read by the board (a PONG confirmed it) leaves nothing to send again.
    for (const write of flood) rig.link.writeFirmata(write);
    await rig.clock.advanceAsync(300);
    expect(await throughLoss(rig, [])).toEqual([]);
    await rig.link.close();
  });

  it('writes a PONG confirmed before the loss are not sent again', async () => {
    const rig = await readyDeaf();
    expect(await throughLoss(rig, [])).toEqual([]);
    expect(rig.link.stats()).toMatchObject({ resends: 0, replays: 0 });
    await rig.link.close();
  });
});

function indexOfSeq(haystack: number[], needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * A tcp:// link through a path that forgets a connection idle for `forgetMs` (no bytes either
 * way): from then on, nothing passes and nobody is told, as the relay of the integration tests.
 */
class ForgettingPath extends FakeDevice {
  private lastTraffic: number;
  private forgotten = false;
  constructor(
    clock: ManualClock,
    private readonly forgetMs: number,
  ) {
    super(clock);
    this.lastTraffic = clock.now();
  }
  private passes(): boolean {
    if (!this.forgotten && this.clock.now() - this.lastTraffic >= this.forgetMs) this.forgotten = true;
    if (!this.forgotten) this.lastTraffic = this.clock.now();
    return !this.forgotten;
  }
  override write(bytes: Uint8Array): boolean {
    if (!this.passes()) return true; // the kernel took it; the path drops it
    return super.write(bytes);
  }
  override reply(message: DeviceMessage): void {
    this.clock.setTimeout(() => {
      if (this.passes() && this.isOpen) this.emit('data', Buffer.from(encodeFrame(message)));
    }, 5);
  }
}

describe('DeviceLink keep-traffic on a tcp:// path that forgets idle links (fake path, fake time)', () => {
  it('20 s pings through a path forgetting after 6 s: two cuts while learning, then none for an hour; the interval below 6 s; drops counted half-open', async () => {
    const clock = new ManualClock();
    const link = new DeviceLink({ target: 'tcp://bridge.example:2000', clock, transportFactory: () => new ForgettingPath(clock, 6000), session: { pingIntervalMs: 20_000, misses: 3 } });
    const lost: number[] = [];
    link.on('state', (c) => c.to === 'lost' && lost.push(clock.now()));
    link.start();
    await clock.advanceAsync(10 * 60_000);
    const learned = link.keepTraffic!.stats;
    expect(learned.learned).toBe(true);
    expect(lost.length).toBeGreaterThanOrEqual(1);
    expect(lost.length).toBeLessThanOrEqual(2);
    expect(learned.intervalMs).toBeLessThan(6000);
    expect(learned.drops).toEqual({ closed: 0, 'half-open': lost.length });
    const before = lost.length;
    await clock.advanceAsync(3600_000);
    expect(lost.length).toBe(before);
    expect(link.state).toBe('ready');
    await link.close();
  });

  it('learning off: the same path cuts the link at every ping interval, as before', async () => {
    const clock = new ManualClock();
    const link = new DeviceLink({ target: 'tcp://bridge.example:2000', clock, transportFactory: () => new ForgettingPath(clock, 6000), session: { pingIntervalMs: 20_000, misses: 3 }, keepTraffic: { learn: false } });
    const lost: number[] = [];
    link.on('state', (c) => c.to === 'lost' && lost.push(clock.now()));
    link.start();
    await clock.advanceAsync(3600_000);
    expect(link.keepTraffic!.stats.intervalMs).toBe(20_000);
    expect(lost.length).toBeGreaterThan(30);
    await link.close();
  });
});
