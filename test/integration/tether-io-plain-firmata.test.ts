import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import five from 'johnny-five';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { TetherIO } from '../../host/tether-io/tether-io.ts';
import { connect } from '../../host/index.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import type { DeviceSessionOptions, RebootInfo, StateChange } from '../../host/session/device-session.ts';
import { buildPlainFirmata } from '../support/plain-firmata.ts';
import { waitFor } from '../support/wait-for.ts';

// A Uno running a plain Firmata firmware that behaves at boot as StandardFirmata does (our
// firmware's --plain-firmata build: blinks ~2 s before reading serial, announces itself
// unasked, then drives every digital pin LOW), behind a pty, with an unmodified Johnny-Five
// program on TetherIO. Liveness comes from Firmata answers, reboots from the announcement, and
// `ready` comes only once the pins, outputs and reporting are back on the MCU.

let hexPath = '';
beforeAll(() => {
  hexPath = buildPlainFirmata();
}, 60_000);

type SessionOptions = Omit<DeviceSessionOptions, 'send' | 'sendRaw' | 'restore' | 'restorePlain' | 'clock' | 'logger' | 'leases'>;

const OPTION_SETS: Array<[string, SessionOptions]> = [
  ['default options', {}],
  ['short options (200 ms x 3, 2 attempts)', { pingIntervalMs: 200, misses: 3, helloAttempts: 2 }],
];

/** What the MCU drives on the pins the program set: D13 and D8 HIGH outputs, D2 an input (not driven). */
function mcuPins(board: BoardOnPty) {
  return { d13: board.uno.digitalOutput(13), d8: board.uno.digitalOutput(8), d2: board.uno.digitalOutput(2) };
}
const PROGRAM_PINS = { d13: true, d8: true, d2: null };

for (const [label, session] of OPTION_SETS) {
  describe(`TetherIO with a StandardFirmata-like board (${label})`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-plain-'));
    const ptyPath = join(dir, 'uno');
    const logger = new RecordingLogger();
    let board: BoardOnPty;
    let io: TetherIO;
    let j5: five.Board;
    let sensor: five.Sensor;
    let button: five.Button;
    let presses = 0;
    let releases = 0;
    const states: StateChange[] = [];
    const reboots: RebootInfo[] = [];
    /** The MCU's pins at each `ready` (taken in the event, before anything else runs). */
    const pinsAtReady: Array<ReturnType<typeof mcuPins>> = [];

    beforeAll(async () => {
      board = await BoardOnPty.start({ hexPath, ptyPath });
      // Running: past its ~2 s boot blink and its announcement (emulated time).
      await waitFor(() => board.uno.stats.uptimeMs > 2500, { timeoutMs: 15_000, what: 'the board past its boot blink' });
      io = new TetherIO({ port: ptyPath, logger, session, backoff: { initialMs: 50, maxMs: 400 } });
      io.on('state', (c: StateChange) => {
        states.push(c);
        if (c.to === 'ready') pinsAtReady.push(mcuPins(board));
      });
      io.on('reboot', (r: RebootInfo) => reboots.push(r));
      j5 = new five.Board({ io, repl: false, debug: false, timeout: 20_000 });
      await new Promise<void>((resolve) => j5.on('ready', () => resolve()));
      new five.Led({ pin: 13, board: j5 }).on();
      new five.Led({ pin: 8, board: j5 }).on();
      button = new five.Button({ pin: 2, board: j5 });
      button.on('press', () => presses++);
      button.on('release', () => releases++);
      sensor = new five.Sensor({ pin: 'A0', board: j5, freq: 25 });
      await waitFor(() => io.link.state === 'ready' && JSON.stringify(mcuPins(board)) === JSON.stringify(PROGRAM_PINS), { timeoutMs: 5000, what: 'program pins set' });
    }, 60_000);

    afterAll(async () => {
      await io?.close();
      await board?.close();
    });

    /** The reporting the program asked for works: an analog value and a button press reach it. */
    async function reportingWorks(volts: number): Promise<void> {
      board.uno.setAnalogInput(0, volts);
      const expected = Math.round((volts / 5) * 1023);
      const since = performance.now();
      const detail = () =>
        `sensor ${sensor.value}, link ${io.link.state}, states ${states.map((s) => s.to).join(',')}, reboots ${reboots.length}, ` +
        `MCU uptime ${board.uno.stats.uptimeMs.toFixed(0)} ms, ${(performance.now() - since).toFixed(0)} ms since the input was set`;
      // 19 ms sampling: 5 s is for a loaded machine; the detail says where it stood if it ever fails.
      await waitFor(() => Math.abs(sensor.value - expected) <= 2, { timeoutMs: 5000, what: `sensor reading ${expected}`, detail });
      const [pressesBefore, releasesBefore] = [presses, releases];
      board.uno.setDigitalInput(2, true);
      await waitFor(() => presses > pressesBefore, { timeoutMs: 1000, what: 'button press' });
      board.uno.setDigitalInput(2, false);
      await waitFor(() => releases > releasesBefore, { timeoutMs: 1000, what: 'button release' });
    }

    async function readyAgain(fault: () => void): Promise<void> {
      const rebootsBefore = reboots.length;
      const readyBefore = pinsAtReady.length;
      fault();
      await waitFor(() => pinsAtReady.length > readyBefore && io.link.state === 'ready', { timeoutMs: 15_000, what: 'ready again' });
      await new Promise((r) => setTimeout(r, 300)); // a fixed wait on purpose: a second reboot report would come now
      expect(reboots.length - rebootsBefore).toBe(1);
      expect(pinsAtReady.at(-1)).toEqual(PROGRAM_PINS); // on the MCU, at the moment of `ready`
    }

    it('is plain Firmata, ready with no lost before any fault, and the log says so', async () => {
      await new Promise((r) => setTimeout(r, 3500)); // a fixed wait on purpose: past the handshake time, no lost may come
      expect(io.link.session.protocol).toBe('firmata');
      expect(states.map((s) => s.to)).toEqual(['ready']);
      expect(reboots).toEqual([]);
      expect(logger.records.some((r) => r.level === 'warn' && /plain Firmata/.test(r.msg ?? ''))).toBe(true);
      await reportingWorks(2.5);
    });

    it('a reset while running: one reboot, pins, outputs and reporting restored before ready', async () => {
      // The ~2 s boot blink is silence: `lost` at 200 ms x 3, and at 1000 ms x 3 only when a
      // loaded machine slows the emulator; either way one reboot and `ready` once restored.
      await readyAgain(() => board.uno.reset());
      await reportingWorks(1.0);
    });

    it('a reset after a hang: lost, then one reboot and everything restored before ready', async () => {
      board.uno.freeze();
      await waitFor(() => io.link.state === 'lost', { timeoutMs: 10_000, what: 'lost' });
      expect(states.at(-1)!.cause).toMatch(/^no Firmata answer for \d+ ms/);
      await readyAgain(() => board.uno.reset());
      await reportingWorks(3.5);
    });

    it('a power cycle: one reboot and everything restored before ready', async () => {
      await readyAgain(() => board.uno.powerCycle());
      await reportingWorks(0.5);
    });

    it('connect() on the running board is ready within the handshake time', async () => {
      await io.close();
      const started = performance.now();
      const link = await connect(ptyPath, { session, readyTimeoutMs: 3000 });
      const tookMs = performance.now() - started;
      try {
        expect(link.session.protocol).toBe('firmata');
        expect(tookMs).toBeLessThan(3000);
      } finally {
        await link.close();
      }
    });
  });
}
