import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import five from 'johnny-five';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { TetherIO } from '../../host/tether-io/tether-io.ts';
import type { StateChange } from '../../host/session/device-session.ts';
import { waitFor, within } from '../support/wait-for.ts';

// An unmodified Johnny-Five program on TetherIO, across an unplug/replug of the emulated board.

describe('TetherIO with Johnny-Five', () => {
  let board: BoardOnPty;
  let io: TetherIO;
  let j5: five.Board;
  const states: StateChange[] = [];
  const errors: unknown[] = [];

  beforeAll(async () => {
    const ptyPath = join(mkdtempSync(join(tmpdir(), 'tether-io-')), 'uno');
    board = await BoardOnPty.start({ hexPath: FIRMWARE_HEX_PATH, ptyPath });
    io = new TetherIO({ port: ptyPath, session: { pingIntervalMs: 200, misses: 3 }, backoff: { initialMs: 50, maxMs: 400 } });
    io.on('state', (c: StateChange) => states.push(c));
    j5 = new five.Board({ io, repl: false, debug: false, timeout: 20_000 });
    j5.on('error', (e: unknown) => errors.push(e));
    await new Promise<void>((resolve) => j5.on('ready', () => resolve()));
  }, 30_000);

  afterAll(async () => {
    await io?.close();
    await board?.close();
  });

  const stateList = () => `states: ${states.map((s) => s.to).join(', ')}`;
  function toggles(since: number): number {
    return pinLog.filter((t) => t > since).length;
  }
  const pinLog: number[] = [];

  it('a blinking Led keeps blinking on the same pin across unplug and replug, a Button still reports', async () => {
    board.uno.on('pin', (pin) => {
      if (pin === 13) pinLog.push(performance.now());
    });
    const led = new five.Led({ pin: 13, board: j5 });
    const button = new five.Button({ pin: 2, board: j5 });
    led.blink(100);
    await waitFor(() => toggles(0) >= 4, { timeoutMs: 800, what: '4 toggles of pin 13' });

    const lost = new Promise<void>((resolve) => io.once('lost', () => resolve()));
    await board.unplug();
    await within(lost, { timeoutMs: 5000, what: "TetherIO's 'lost' after the unplug", detail: stateList });
    await new Promise((r) => setTimeout(r, 1000)); // a fixed wait on purpose: the program keeps running, blinking into the void
    const back = new Promise<void>((resolve) => io.once('ready', () => resolve()));
    const replugAt = performance.now();
    await board.replug();
    await within(back, { timeoutMs: 10_000, what: "TetherIO's 'ready' after the replug", detail: stateList });
    await waitFor(() => toggles(replugAt) >= 4, { timeoutMs: 800, what: '4 toggles of pin 13 after the replug' });
    expect(states.map((s) => s.to)).toContain('lost');
    expect(io.link.stats().replays).toBeGreaterThanOrEqual(1);

    // Digital reporting for the Button was set once, before the unplug: it must have been replayed.
    const pressed = new Promise<void>((resolve) => button.on('press', () => resolve()));
    board.uno.setDigitalInput(2, true);
    await within(pressed, { timeoutMs: 5000, what: "the Button's press after the replug", detail: () => `replays ${io.link.stats().replays}` });
    board.uno.setDigitalInput(2, false);
    led.stop();
    expect(errors).toEqual([]);
  }, 30_000);
});
