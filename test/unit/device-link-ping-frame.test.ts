import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { DeviceLink } from '../../host/link/device-link.ts';
import type { Transport, TransportEvents } from '../../host/transport/transport.ts';
import { decodeFrame, encodeFrame, FrameSplitter } from '../../shared/protocol/index.ts';
import type { DeviceMessage, HostMessage } from '../../shared/protocol/messages.ts';

/**
 * A board behind a transport that reports how much of what was written is still queued
 * (`pendingWriteBytes`, as a socket's writableLength): the test sets it. Keeps every buffer
 * object written, and a copy of its bytes at the time of the write.
 */
class QueueingTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly description = 'fake';
  isOpen = false;
  /** undefined: a transport that cannot tell (a serial port). */
  pending: number | undefined = 0;
  readonly writes: Array<{ buffer: Uint8Array; bytes: number[] }> = [];
  private readonly splitter = new FrameSplitter({ from: 'host' });

  constructor(private readonly clock: ManualClock) {
    super();
  }

  get pendingWriteBytes(): number | undefined {
    return this.pending;
  }
  async open(): Promise<void> {
    this.isOpen = true;
  }
  async close(): Promise<void> {
    this.isOpen = false;
    this.emit('close', null);
  }
  write(bytes: Uint8Array): boolean {
    this.writes.push({ buffer: bytes, bytes: Array.from(bytes) });
    for (const e of this.splitter.push(bytes)) {
      if (e.kind !== 'message') continue;
      const m = e.message as HostMessage;
      if (m.type === 'hello-request') this.reply({ type: 'hello', fwMajor: 1, fwMinor: 0, bootId: 9, resetCauses: [], stateSurvived: true, pinsRestored: true, reply: true, watchdogMs: 0, policy: 'stay', hostTimeoutMs: 0, capabilities: { watchdog: true, sleep: true, state: true, pinRestore: true, beats: false }, stateSize: 32, name: 'tether' });
      if (m.type === 'ping') this.reply({ type: 'pong', seq: m.seq, uptimeMs: 1, bootId: 9, leaseActive: false, sleepPending: false, stateValid: true, hostWasLost: false, leaseRemainingMs: 0 });
    }
    return true;
  }
  pings(): Array<{ buffer: Uint8Array; bytes: number[] }> {
    return this.writes.filter((w) => {
      const d = decodeFrame(Uint8Array.from(w.bytes));
      return d.ok && d.message.type === 'ping';
    });
  }
  private reply(message: DeviceMessage): void {
    const frame = Buffer.from(encodeFrame(message));
    this.clock.setTimeout(() => this.emit('data', frame), 5);
  }
}

async function readyLink() {
  const clock = new ManualClock();
  const transport = new QueueingTransport(clock);
  const link = new DeviceLink({ target: 'fake', clock, transportFactory: () => transport, session: { pingIntervalMs: 100, misses: 3 } });
  link.start();
  await clock.advanceAsync(500);
  expect(link.state).toBe('ready');
  return { clock, transport, link };
}

describe('DeviceLink PING frames', () => {
  it('reuses one buffer for its PINGs while each is taken at once, and takes a fresh one while a PING is still queued', async () => {
    const { clock, transport, link } = await readyLink();
    const before = transport.pings().length;
    await clock.advanceAsync(300);
    const taken = transport.pings().slice(before);
    expect(taken.length).toBeGreaterThanOrEqual(3);
    expect(new Set(taken.map((w) => w.buffer)).size).toBe(1);

    // The socket could not take the next one whole: it holds that buffer until it is sent.
    transport.pending = 14;
    const queuedAt = transport.pings().length;
    await clock.advanceAsync(100);
    const queued = transport.pings()[queuedAt]!;
    await clock.advanceAsync(300);
    const after = transport.pings().slice(queuedAt + 1);
    expect(after.length).toBeGreaterThanOrEqual(3);
    for (const w of after) expect(w.buffer).not.toBe(queued.buffer);
    // What was queued is not overwritten by the PINGs that followed.
    expect(Array.from(queued.buffer)).toEqual(queued.bytes);

    // Sent at once again: reused again.
    transport.pending = 0;
    const again = transport.pings().length;
    await clock.advanceAsync(400);
    const later = transport.pings().slice(again + 1);
    expect(later.length).toBeGreaterThanOrEqual(2);
    expect(new Set(later.map((w) => w.buffer)).size).toBe(1);
    // Every PING carried its own seq, and each was answered.
    const seqs = transport.pings().map((w) => (w.bytes[4]! | (w.bytes[5]! << 7)));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(link.stats().pongs).toBeGreaterThanOrEqual(seqs.length - 1);
    expect(link.state).toBe('ready');
    await link.close();
  });

  it('never reuses a PING buffer on a transport that cannot tell whether its writes left (a serial port)', async () => {
    const { clock, transport, link } = await readyLink();
    transport.pending = undefined;
    const from = transport.pings().length;
    await clock.advanceAsync(400);
    const sent = transport.pings().slice(from + 1);
    expect(sent.length).toBeGreaterThanOrEqual(3);
    expect(new Set(sent.map((w) => w.buffer)).size).toBe(sent.length);
    for (const w of sent) expect(Array.from(w.buffer)).toEqual(w.bytes);
    await link.close();
  });
});
