import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PtyBridge } from '../../emulator/avr/pty-bridge.ts';
import { EspruinoOnPty } from '../../emulator/espruino/espruino-on-pty.ts';
import { EspruinoReplTransport } from '../../host/espruino/espruino-repl-transport.ts';
import { readEspruinoModule } from '../../host/espruino/module-source.ts';
import { SerialTransport } from '../../host/transport/serial-transport.ts';
import { encodeFrame, FrameSplitter } from '../../shared/protocol/index.ts';
import type { DeviceMessage, MessageOf } from '../../shared/protocol/messages.ts';
import { waitFor } from '../support/wait-for.ts';

// `tether flash --board espruino` (the real CLI, as a child process) against an emulated
// Espruino (the stand-in board running in this process, real time) on a pty.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'bin', 'tether.js');
const dir = mkdtempSync(join(tmpdir(), 'tether-espruino-flash-'));

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI without blocking this process's event loop (the board runs in it). */
function tetherFlash(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'flash', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr })); // 'close': after the pipes are drained, not 'exit'
  });
}

/** The error line, after checking it is the only one besides progress lines and names the command. */
function oneLineError(result: CliResult): string {
  const lines = result.stderr
    .trim()
    .split('\n')
    .filter((line) => !/^[a-z]+ \d+% /.test(line));
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^tether flash: /);
  return lines[0]!;
}

const open: Array<{ close(): Promise<void> }> = [];
let count = 0;

/** On USB (default) or, with `baudRate`, on a UART at that rate (bytes lost if XOFF is not honoured in time). */
async function espruino(program?: string, baudRate?: number): Promise<EspruinoOnPty> {
  const board = await EspruinoOnPty.start({ ptyPath: join(dir, `espruino-${++count}`), program, baudRate });
  open.push(board);
  return board;
}

/** Asks the board on `ptyPath` for HELLO through the REPL framing, as the daemon would. */
async function helloFrom(ptyPath: string): Promise<MessageOf<'hello'>> {
  const transport = new EspruinoReplTransport(new SerialTransport(ptyPath, { baudRate: 9600, presenceCheckMs: 0 }));
  const splitter = new FrameSplitter({ from: 'device' });
  const messages: DeviceMessage[] = [];
  transport.on('data', (bytes) => {
    for (const e of splitter.push(bytes)) if (e.kind === 'message') messages.push(e.message as DeviceMessage);
  });
  await transport.open();
  try {
    // Asked again every 100 ms until it answers.
    return await waitFor(
      () => {
        const hello = messages.find((m): m is MessageOf<'hello'> => m.type === 'hello' && m.reply);
        if (!hello) transport.write(encodeFrame({ type: 'hello-request' }));
        return hello;
      },
      { timeoutMs: 2000, intervalMs: 100, what: `a HELLO from ${ptyPath}` },
    );
  } finally {
    await transport.close();
  }
}

afterAll(async () => {
  for (const thing of open.splice(0)) await thing.close();
});

describe('tether flash --board espruino', () => {
  it('uploads the module to a blank board over a real serial port, saves it, and the board then answers HELLO', async () => {
    const e = await espruino(); // empty flash: a bare REPL
    const result = await tetherFlash(['--board', 'espruino', '--port', e.ptyPath]);
    expect(result.code, `${result.stderr} ${JSON.stringify(e.board.stats)}`).toBe(0);
    expect(result.stdout).toMatch(/^tether flash: uploaded .*tether-keepalive\.js \(\d+ bytes\) to .* and saved it in [\d.]+ s; the board answers HELLO as 'tether-espruino PICO_R1_3'/);
    // Off a TTY: a plain line per phase (and per 25% of the upload).
    for (const phase of ['connecting', 'resetting', 'uploading', 'saving', 'verifying']) expect(result.stderr).toMatch(new RegExp(`^${phase} \\d+%`, 'm'));
    expect(result.stderr).toMatch(/^uploading 100% /m);
    expect(e.board.stats.rxDropped).toBe(0); // flow control held

    expect(await helloFrom(e.ptyPath)).toMatchObject({ type: 'hello', name: 'tether-espruino PICO_R1_3' });
    // Saved in flash: after a power cycle the module starts by itself.
    e.board.powerCycle();
    expect(await helloFrom(e.ptyPath)).toMatchObject({ name: 'tether-espruino PICO_R1_3', resetCauses: ['power-on'] });
  });

  it('on a 38400-baud UART (--baud): replaces a module already running (another name, --module) with flow control; the new one answers', async () => {
    const e = await espruino(readEspruinoModule(), 38_400);
    const modulePath = join(dir, 'kitchen.js');
    writeFileSync(modulePath, `${readEspruinoModule()}\ntether.options = { name: 'kitchen-pico' };\n`);
    const result = await tetherFlash(['--board', 'espruino', '--port', e.ptyPath, '--module', modulePath, '--baud', '38400']);
    expect(result.code, `${result.stderr} ${JSON.stringify(e.board.stats)}`).toBe(0);
    expect(result.stdout).toContain("answers HELLO as 'kitchen-pico'");
    expect(await helloFrom(e.ptyPath)).toMatchObject({ name: 'kitchen-pico' });
    expect(e.board.stats).toMatchObject({ rxDropped: 0, resets: { watchdog: 0 } });
  });

  it('a pty with nothing answering: one line naming the port, exit 1', async () => {
    const silent = new PtyBridge(join(dir, 'silent'));
    await silent.open();
    open.push(silent);
    const result = await tetherFlash(['--board', 'espruino', '--port', silent.linkPath]);
    expect(result.code).toBe(1);
    expect(oneLineError(result)).toMatch(/no Espruino REPL answered on .*silent @ 9600 baud; is .* an Espruino board \(on a UART give its baud rate \(--baud\)\)/);
  });

  it('a program the board rejects: one line with the board\'s complaint, exit 1', async () => {
    const e = await espruino();
    const modulePath = join(dir, 'broken.js');
    writeFileSync(modulePath, 'var x = 1;\nundefinedFunction(x);\n');
    const result = await tetherFlash(['--board', 'espruino', '--port', e.ptyPath, '--module', modulePath]);
    expect(result.code).toBe(1);
    expect(oneLineError(result)).toMatch(/the board rejected the module: .*Uncaught.*undefinedFunction/);
  });

  it('no such port, no such module: one line, exit 1', async () => {
    const noPort = await tetherFlash(['--board', 'espruino', '--port', join(dir, 'nothing-here')]);
    expect(noPort.code).toBe(1);
    expect(oneLineError(noPort)).toMatch(/serial port .*nothing-here not found/);
    const e = await espruino();
    const noModule = await tetherFlash(['--board', 'espruino', '--port', e.ptyPath, '--module', join(dir, 'missing.js')]);
    expect(noModule.code).toBe(1);
    expect(oneLineError(noModule)).toMatch(/module not found: .*missing\.js/);
  });

  it('usage errors: exit 2 with the help', async () => {
    const hex = await tetherFlash(['--board', 'espruino', '--port', '/dev/null', '--hex', 'x.hex']);
    expect(hex.code).toBe(2);
    expect(hex.stderr).toMatch(/--hex is not for --board espruino/);
    const baud = await tetherFlash(['--board', 'espruino', '--port', '/dev/null', '--baud', 'fast']);
    expect(baud.code).toBe(2);
    expect(baud.stderr).toMatch(/--baud must be/);
    const uno = await tetherFlash(['--port', '/dev/null', '--module', 'x.js']);
    expect(uno.code).toBe(2);
    expect(uno.stderr).toMatch(/--module is only for --board espruino/);
    const unknown = await tetherFlash(['--board', 'nano', '--port', '/dev/null']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown board 'nano' \(supported: uno, espruino\)/);
  });
});
