import { beforeEach, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { DeviceLink } from '../../host/link/device-link.ts';
import type { RebootInfo } from '../../host/session/device-session.ts';
import type { Transport, TransportEvents } from '../../host/transport/transport.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';

// DeviceLink with a scripted StandardFirmata-like board (fake transport, fake time): how a
// firmware name from the board is read (an answer, an announcement, or undecidable), and what
// is replayed.

// One ManualClock per test (made new in beforeEach): time moves only when a test advances it.
let clock = new ManualClock();

const NAME = [...'StandardFirmata.ino'].flatMap((c) => [c.charCodeAt(0), 0]);
const VERSION = [0xf9, 2, 5];
const FIRMWARE = [0xf0, 0x79, 2, 5, ...NAME, 0xf7];

/** Answers version, firmware and pin-state queries in order after 5 ms; keeps pin modes and outputs. */
class FakeFirmataBoard extends EventEmitter<TransportEvents> implements Transport {
  readonly description = 'fake firmata';
  isOpen = false;
  readonly modes = new Map<number, number>();
  readonly outputs = new Map<number, number>();
  /** While true, nothing is read (a boot blink): input waits, then is answered in order. */
  booting = false;
  private pending: number[] = [];
  written: number[] = [];

  async open(): Promise<void> {
    this.isOpen = true;
  }
  async close(): Promise<void> {
    this.isOpen = false;
    this.emit('close', null);
  }
  write(bytes: Uint8Array): boolean {
    this.written.push(...bytes);
    this.pending.push(...bytes);
    if (!this.booting) this.process();
    return true;
  }
  /** A reset: pins forgotten, silent while booting, then the announcement, then queued input. */
  reboot(bootMs: number): void {
    this.modes.clear();
    this.outputs.clear();
    this.pending = [];
    this.booting = true;
    clock.setTimeout(() => {
      this.booting = false;
      this.send([...VERSION, ...FIRMWARE]);
      this.process();
    }, bootMs);
  }
  private process(): void {
    const b = this.pending;
    this.pending = [];
    const out: number[] = [];
    for (let i = 0; i < b.length; i++) {
      if (b[i] === 0xf9) out.push(...VERSION);
      else if (b[i] === 0xf0 && b[i + 1] === 0x79 && b[i + 2] === 0xf7) out.push(...FIRMWARE);
      else if (b[i] === 0xf0 && b[i + 1] === 0x6d) out.push(0xf0, 0x6e, b[i + 2]!, this.modes.get(b[i + 2]!) ?? 1, this.outputs.get(b[i + 2]!) ?? 0, 0xf7);
      else if (b[i] === 0xf4) this.modes.set(b[i + 1]!, b[i + 2]!);
      else if (b[i] === 0xf5) this.outputs.set(b[i + 1]!, b[i + 2]!);
      else if ((b[i]! & 0xf0) === 0x90) for (let bit = 0; bit < 8; bit++) this.outputs.set((b[i]! & 0x0f) * 8 + bit, ((b[i + 1]! | (b[i + 2]! << 7)) >> bit) & 1);
    }
    if (out.length > 0) this.send(out);
  }
  private send(bytes: number[]): void {
    clock.setTimeout(() => this.emit('data', Buffer.from(bytes)), 5);
  }
}

describe('DeviceLink with a plain Firmata board (fake transport, fake time)', () => {
  beforeEach(() => {
    clock = new ManualClock();
  });

  async function readyLink() {
    const board = new FakeFirmataBoard();
    const link = new DeviceLink({ target: 'fake', clock, transportFactory: () => board, session: { pingIntervalMs: 200, misses: 3 } });
    const reboots: RebootInfo[] = [];
    const states: string[] = [];
    link.on('reboot', (r) => reboots.push(r));
    link.on('state', (c) => states.push(c.to));
    link.start();
    await clock.advanceAsync(200);
    expect(link.state).toBe('ready');
    expect(link.session.protocol).toBe('firmata');
    return { board, link, reboots, states };
  }

  it('an announcement nobody asked for is one reboot: the pins are replayed, then ready', async () => {
    const { board, link, reboots, states } = await readyLink();
    link.writeFirmata([0xf4, 13, 1, 0x91, 0x20, 0x00]); // pin 13 OUTPUT, HIGH (port 1 bit 5)
    await clock.advanceAsync(100);
    expect([board.modes.get(13), board.outputs.get(13)]).toEqual([1, 1]);
    board.reboot(2000);
    await clock.advanceAsync(2100);
    expect(reboots).toHaveLength(1);
    expect(link.state).toBe('ready');
    expect([board.modes.get(13), board.outputs.get(13)]).toEqual([1, 1]);
    expect(link.stats().replays).toBe(1);
    expect(states).toEqual(['ready', 'lost', 'ready']); // 2 s of boot silence is past 200 ms x 3
    await link.close();
  });

  it("the answer to the program's firmware query is not a reboot", async () => {
    const { link, reboots } = await readyLink();
    link.writeFirmata([0xf0, 0x79, 0xf7]);
    await clock.advanceAsync(5000);
    expect(reboots).toEqual([]);
    await link.close();
  });

  it('a query that waited through a boot: announcement and answer cannot be told apart, so the pins are checked (unchanged: no reboot)', async () => {
    const { board, link, reboots } = await readyLink();
    board.booting = true; // e.g. the board was reset just before, unnoticed: 3 s of silence
    link.writeFirmata([0xf0, 0x79, 0xf7]);
    clock.setTimeout(() => {
      board.booting = false;
      (board as unknown as { send(b: number[]): void }).send([...VERSION, ...FIRMWARE]);
      (board as unknown as { process(): void }).process();
    }, 2500);
    await clock.advanceAsync(5000);
    expect(reboots).toEqual([]);
    expect(link.state === 'ready' || link.state === 'lost').toBe(true);
    await link.close();
  });

  it('the same, when the board did forget its pins: one reboot and a replay', async () => {
    const { board, link, reboots } = await readyLink();
    link.writeFirmata([0xf4, 2, 0]); // pin 2 INPUT
    await clock.advanceAsync(100);
    link.writeFirmata([0xf0, 0x79, 0xf7]);
    await clock.advanceAsync(1); // the query is answered...
    board.reboot(2500); // ...but meanwhile the board reset: the answer's place is taken by its announcement
    await clock.advanceAsync(6000);
    expect(reboots).toHaveLength(1);
    expect(board.modes.get(2)).toBe(0);
    expect(link.state).toBe('ready');
    await link.close();
  });
});
