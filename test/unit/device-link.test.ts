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

  constructor(private readonly clock: ManualClock) {
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
      if (m.type === 'hello-request') this.reply({ type: 'hello', fwMajor: 1, fwMinor: 0, bootId: this.bootId, resetCauses: ['power-on'], stateSurvived: false, pinsRestored: false, reply: true, watchdogMs: 2000, policy: 'stay', hostTimeoutMs: 0, capabilities: { watchdog: true, sleep: true, state: true, pinRestore: true }, stateSize: 32, name: 'tether' });
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
    device.reply({ type: 'hello', fwMajor: 1, fwMinor: 0, bootId: 6, resetCauses: ['power-on'], stateSurvived: false, pinsRestored: false, reply: false, watchdogMs: 2000, policy: 'stay', hostTimeoutMs: 0, capabilities: { watchdog: true, sleep: true, state: true, pinRestore: true }, stateSize: 32, name: 'tether' });
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

function indexOfSeq(haystack: number[], needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
