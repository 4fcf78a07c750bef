import { beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SerialPort } from 'serialport';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { loadIntelHex } from '../../host/flash/intel-hex.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { FrameSplitter, type Message } from '../../shared/protocol/index.ts';
import { waitFor } from '../support/wait-for.ts';

// `tether flash` (the real CLI, as a child process) against an emulated Uno running the
// Optiboot built by firmware/bootloader/build-optiboot.sh, on a pty.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'bin', 'tether.js');
const OPTIBOOT = join(ROOT, 'firmware', 'bootloader', 'optiboot_atmega328.hex');
const BUILD_OPTIBOOT = join(ROOT, 'firmware', 'bootloader', 'build-optiboot.sh');
const BUILD_FIRMWARE = join(ROOT, 'firmware', 'avr', 'build.sh');
const APP_BYTES = 0x7e00;

const dir = mkdtempSync(join(tmpdir(), 'tether-flash-'));

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the CLI without blocking this process's event loop (the emulator runs in it). */
function tetherFlash(args: string[]): Promise<CliResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'flash', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started })); // 'close': after the pipes are drained ('exit' may come before the last stderr line)
  });
}

let ptyCount = 0;
/** An emulated Uno on a pty for the length of `body` (stopped after: each one costs CPU). */
async function withBoard(options: { hexPath: string; bootloaderPath?: string }, body: (board: BoardOnPty) => Promise<void>): Promise<void> {
  const board = await BoardOnPty.start({ ...options, ptyPath: join(dir, `uno-${++ptyCount}`) });
  try {
    await body(board);
  } finally {
    await board.close();
  }
}

/** The application section as a programmer leaves it: the image, then erased flash. */
function expectedApplication(hexPath: string): Uint8Array {
  const flash = new Uint8Array(APP_BYTES).fill(0xff);
  loadIntelHex(readFileSync(hexPath, 'utf8'), flash);
  return flash;
}

/** The last line of stderr, after checking it is the only one and names the command. */
function oneLineError(result: CliResult): string {
  const lines = result.stderr.trim().split('\n');
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^tether flash: /);
  return lines[0]!;
}

let plainFirmataHex: string;

beforeAll(() => {
  // Some other application to flash over: the firmware without the keepalive extension.
  plainFirmataHex = join(dir, 'plain-firmata.hex');
  execFileSync('bash', [BUILD_FIRMWARE, '--plain-firmata', plainFirmataHex], { stdio: 'ignore' });
});

describe('Optiboot build', () => {
  it('the committed optiboot_atmega328.hex is a fresh build of the Debian source and fits the boot section', async () => {
    const { stdout } = await promisify(execFile)('bash', [BUILD_OPTIBOOT, '--check']);
    expect(stdout).toMatch(/up to date \(496 bytes of code in the 512-byte boot section\)/);
    const flash = new Uint8Array(0x8000).fill(0xff);
    expect(loadIntelHex(readFileSync(OPTIBOOT, 'utf8'), flash)).toBe(0x8000);
    expect(flash.subarray(0, 0x7e00).every((b) => b === 0xff)).toBe(true);
  });

  it('fails clearly when the Optiboot source is missing', async () => {
    const err = (await promisify(execFile)('bash', [BUILD_OPTIBOOT, join(dir, 'x.hex')], {
      env: { ...process.env, ARDUINO_AVR: join(dir, 'no-arduino') },
    }).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(/Optiboot source not found .*no-arduino\/bootloaders\/optiboot\/optiboot\.c.*arduino-core-avr/);
  });
});

describe('the pty auto-reset (a pty has no DTR)', () => {
  it('resets into the bootloader on a GET_SYNC after >= 1 s of client silence, not on other bytes or mid-conversation', async () => {
    await withBoard({ hexPath: plainFirmataHex, bootloaderPath: OPTIBOOT }, async (board) => {
      const arrivals: string[] = [];
      let last = performance.now();
      board.bridge.on('data', (bytes) => {
        const now = performance.now();
        arrivals.push(`${bytes[0]!.toString(16)} after ${Math.round(now - last)} ms`);
        last = now;
      });
      const port = new SerialPort({ path: board.bridge.linkPath, baudRate: 115200, autoOpen: false });
      await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
      const send = (bytes: number[]) => new Promise<void>((resolve) => port.write(Buffer.from(bytes), () => resolve()));
      // Fixed pauses on purpose: how long the client stays silent is what the auto-reset decides on.
      const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
      try {
        await pause(1100);
        await send([0x30, 0x20]); // a programmer's first GET_SYNC: reset
        await pause(100);
        await send([0x30, 0x20]); // its retry, mid-conversation: no reset
        await pause(1100);
        await send([0xf9]); // Firmata REPORT_VERSION after silence: not a programmer
        await pause(1100);
        await send([0x30, 0x20]); // a new programmer session: reset
        await waitFor(() => board.autoResets >= 2 && board.uno.stats.resets.external >= 2, {
          timeoutMs: 2000,
          what: 'the second auto-reset',
          detail: () => `autoResets ${board.autoResets}, external resets ${board.uno.stats.resets.external}; ${arrivals.join(', ')}`,
        });
        expect({ autoResets: board.autoResets, external: board.uno.stats.resets.external }, arrivals.join(', ')).toEqual({
          autoResets: 2,
          external: 2,
        });
      } finally {
        await new Promise<void>((resolve) => port.close(() => resolve()));
      }
    });
  });
});

describe('tether flash through an emulated Optiboot', () => {
  it('replaces another application with tether.hex, verifies it, and the board boots into it (HELLO)', async () => {
    await withBoard({ hexPath: plainFirmataHex, bootloaderPath: OPTIBOOT }, async (board) => {
      const bootSection = board.uno.flash.slice(APP_BYTES);
      expect(board.uno.flash.subarray(0, APP_BYTES)).toEqual(expectedApplication(plainFirmataHex));
      const splitter = new FrameSplitter();
      const messages: Message[] = [];
      board.uno.on('data', (bytes) => {
        for (const e of splitter.push(bytes)) if (e.kind === 'message') messages.push(e.message);
      });

      const result = await tetherFlash(['--port', board.bridge.linkPath]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^tether flash: wrote [78]\d{3} bytes \(\d+ pages\) of .*tether\.hex to .* and verified them in [\d.]+ s\n$/);
      // Not a TTY here: plain progress lines, each phase from 0% to 100%.
      expect(result.stderr).toMatch(/^writing 0% 0\.0\/[78]\.\d KB\n(.*\n)*writing 100% .*\n(.*\n)*verifying 100% /);
      console.log(`flash of ${FIRMWARE_HEX_PATH}: ${result.stdout.trim().replace(/.* in /, '')} of protocol, ${(result.ms / 1000).toFixed(1)} s for the whole CLI`);

      expect(board.autoResets).toBe(1);
      expect(board.uno.flash.subarray(0, APP_BYTES)).toEqual(expectedApplication(FIRMWARE_HEX_PATH));
      expect(board.uno.flash.subarray(APP_BYTES)).toEqual(bootSection);

      // LEAVE_PROGMODE makes Optiboot start the application (by its watchdog): our firmware says HELLO.
      await waitFor(() => messages.some((m) => m.type === 'hello'), { timeoutMs: 5000, what: 'HELLO from the new firmware' });
      expect(messages.find((m) => m.type === 'hello')).toMatchObject({ type: 'hello', name: 'tether' });
    });
  });

  it('--no-verify writes without reading back', async () => {
    await withBoard({ hexPath: plainFirmataHex, bootloaderPath: OPTIBOOT }, async (board) => {
      const result = await tetherFlash(['--port', board.bridge.linkPath, '--no-verify']);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/\(not verified\)/);
      expect(result.stderr).not.toMatch(/verifying/);
      expect(board.uno.flash.subarray(0, APP_BYTES)).toEqual(expectedApplication(FIRMWARE_HEX_PATH));
    });
  });
});

describe.concurrent('tether flash failures: one line on stderr, non-zero exit', () => {
  it('a hex file that does not exist', async () => {
    const result = await tetherFlash(['--port', join(dir, 'whatever'), '--hex', join(dir, 'missing.hex')]);
    expect(result.code).toBe(1);
    expect(oneLineError(result)).toMatch(/firmware file not found: .*missing\.hex$/);
  });

  it('a hex file that is not Intel HEX', async () => {
    const bad = join(dir, 'bad.hex');
    writeFileSync(bad, 'hello\n');
    const result = await tetherFlash(['--port', join(dir, 'whatever'), '--hex', bad]);
    expect(result.code).toBe(1);
    expect(oneLineError(result)).toMatch(/bad\.hex is not a valid Intel HEX file: Intel HEX line 1: not a record$/);
  });

  it('a port that does not exist', async () => {
    const result = await tetherFlash(['--port', join(dir, 'no-such-port')]);
    expect(result.code).toBe(1);
    expect(oneLineError(result)).toMatch(/serial port .*no-such-port does not exist/);
  });

  it('no sync: the board has no bootloader and runs our firmware', async () => {
    await withBoard({ hexPath: FIRMWARE_HEX_PATH }, async (board) => {
      const result = await tetherFlash(['--port', board.bridge.linkPath]);
      expect(result.code).toBe(1);
      expect(oneLineError(result)).toMatch(/no answer from the bootloader to 10 GET_SYNC attempts .*has no DTR line to reset the board.*; is .* an Arduino Uno with its bootloader\?$/);
      expect(board.uno.stats.flashPagesWritten).toBe(0);
      expect(board.autoResets).toBe(0);
    });
  });

  it('wrong signature: an Optiboot built for the ATmega328 (not P) says 1E 95 14', async () => {
    const optiboot328 = join(dir, 'optiboot-atmega328.hex');
    await promisify(execFile)('bash', [BUILD_OPTIBOOT, '--mcu', 'atmega328', optiboot328]);
    await withBoard({ hexPath: plainFirmataHex, bootloaderPath: optiboot328 }, async (board) => {
      const result = await tetherFlash(['--port', board.bridge.linkPath]);
      expect(result.code).toBe(1);
      expect(oneLineError(result)).toBe(
        'tether flash: wrong signature: the chip says 1E 95 14 (ATmega328), an Arduino Uno has 1E 95 0F (ATmega328P)',
      );
      expect(board.uno.stats.flashPagesWritten).toBe(0);
      expect(board.uno.flash.subarray(0, APP_BYTES)).toEqual(expectedApplication(plainFirmataHex));
    });
  });

  it('port busy: another process holds the port', async () => {
    await withBoard({ hexPath: plainFirmataHex, bootloaderPath: OPTIBOOT }, async (board) => {
      const holder = new SerialPort({ path: board.bridge.linkPath, baudRate: 115200, autoOpen: false }); // lock: true by default
      await new Promise<void>((resolve, reject) => holder.open((err) => (err ? reject(err) : resolve())));
      try {
        const result = await tetherFlash(['--port', board.bridge.linkPath]);
        expect(result.code).toBe(1);
        expect(oneLineError(result)).toMatch(/serial port .* is busy: another program has it open/);
        expect(board.uno.stats.flashPagesWritten).toBe(0);
      } finally {
        await new Promise<void>((resolve) => holder.close(() => resolve()));
      }
    });
  });

  it('an unsupported board is a usage error (exit 2) naming the supported ones', async () => {
    const result = await tetherFlash(['--port', join(dir, 'whatever'), '--board', 'mega']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^tether flash: unknown board 'mega' \(supported: uno, espruino\)\n/);
  });
});
