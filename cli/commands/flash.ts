import { parseArgs } from 'node:util';
import { BOARDS, boardById } from '../../host/flash/boards.ts';
import { FlashError } from '../../host/flash/errors.ts';
import { readFirmwareImage } from '../../host/flash/firmware-image.ts';
import { flashSerialPort } from '../../host/flash/flash-serial-port.ts';
import { flashThroughDaemon } from '../../host/flash/flash-through-daemon.ts';
import { readFile } from 'node:fs/promises';
import type { FlashProgress } from '../../host/flash/program-firmware.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { ESPRUINO_DEFAULT_BAUD, flashEspruino } from '../../host/espruino/flash-espruino.ts';
import { ESPRUINO_MODULE_PATH, readEspruinoModule } from '../../host/espruino/module-source.ts';
import type { UploadProgress } from '../../host/espruino/upload.ts';
import type { Command } from '../command.ts';
import { EXIT, UsageError } from '../usage-error.ts';

/** Espruino boards run JavaScript: no bootloader image, so not in BOARDS (boardById). */
const ESPRUINO = 'espruino';
const supportedBoards = [...Object.keys(BOARDS), ESPRUINO].join(', ');

const help = `Usage: tether flash --port <path> [options]

Writes tether's firmware (or another Intel HEX image) to a board through its bootloader
(Optiboot, STK500v1 at 115200 baud): resets the board by DTR, checks the chip signature,
writes every page and reads it back. Close other programs that use the port first.

With --board espruino it uploads the keepalive module (firmware/espruino/tether-keepalive.js)
over the Espruino REPL instead: Ctrl-C, reset(), the module line by line honouring XON/XOFF,
save(), then checks that the board answers HELLO.

Options:
  --port <path>     the board's serial port (e.g. /dev/ttyACM0)
  --board <name>    board type: ${supportedBoards} (default: uno)
  --hex <file>      image to write (default: the shipped firmware/avr/tether.hex; uno only)
  --no-verify       skip reading the flash back (uno only)
  --daemon <sock>   flash through a running tether daemon (its control socket, by default
                    <queue.dir>/control.sock): it pauses the board's session, takes a "flashing"
                    lease, publishes $state init, flashes, then re-handshakes and replays state
                    (uno only)
  --module <file>   espruino: the JavaScript to upload and save (default: the shipped module)
  --baud <rate>     espruino on a UART (Serial1 through a USB-serial adapter): its baud rate
                    (Espruino's default is ${ESPRUINO_DEFAULT_BAUD}); the upload is paced to it. Omit it for
                    a board on its own USB port (the rate does not matter there)
  -h, --help        this help

Exit codes: 0 flashed, 1 flashing failed (one line on stderr says why), 2 usage error.`;

export const flashCommand: Command = {
  name: 'flash',
  help,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string' },
        board: { type: 'string', default: 'uno' },
        hex: { type: 'string' },
        'no-verify': { type: 'boolean', default: false },
        daemon: { type: 'string' },
        module: { type: 'string' },
        baud: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      console.log(help);
      return EXIT.ok;
    }
    if (!values.port) throw new UsageError('--port is required (the board\'s serial port, e.g. /dev/ttyACM0)');
    if (values.board === ESPRUINO) {
      for (const option of ['hex', 'daemon', 'no-verify'] as const) {
        if (values[option]) throw new UsageError(`--${option} is not for --board espruino (it uploads JavaScript; use --module <file>)`);
      }
      return await flashEspruinoBoard(values.port, values.module, values.baud);
    }
    for (const option of ['module', 'baud'] as const) {
      if (values[option] !== undefined) throw new UsageError(`--${option} is only for --board espruino`);
    }
    const board = boardById(values.board);
    if (!board) throw new UsageError(`unknown board '${values.board}' (supported: ${supportedBoards})`);
    const hexPath = values.hex ?? FIRMWARE_HEX_PATH;
    const verify = !values['no-verify'];

    const image = await readFirmwareImage(hexPath, board);
    const progress = new ProgressReporter(process.stderr);
    if (values.daemon) {
      const hexText = await readFile(hexPath, 'utf8');
      const done = await flashThroughDaemon(values.daemon, values.port, { ...image, hexText }, (p) => progress.update(p)).finally(() => progress.end());
      console.log(`tether flash: the daemon wrote ${done.bytes} bytes of ${hexPath} to ${values.port}${done.verified ? ' and verified them' : ''} in ${(done.ms / 1000).toFixed(1)} s; the board is back in its session`);
      return EXIT.ok;
    }
    let result;
    try {
      result = await flashSerialPort({ path: values.port, board, image, verify, onProgress: (p) => progress.update(p) });
    } catch (err) {
      progress.end();
      if (err instanceof FlashError && err.code === 'port-busy') {
        throw new FlashError('port-busy', `${err.message}; if tether daemon holds it, flash through it: --daemon <queue.dir>/control.sock`, { cause: err });
      }
      if (err instanceof FlashError && err.code === 'no-sync') {
        throw new FlashError('no-sync', `${err.message}; is ${values.port} an ${board.name} with its bootloader?`, { cause: err });
      }
      throw err;
    }
    progress.end();
    const what = `${result.bytes} bytes (${result.pages} pages) of ${hexPath}`;
    console.log(
      `tether flash: wrote ${what} to ${values.port}${result.verified ? ' and verified them' : ' (not verified)'} in ${(result.durationMs / 1000).toFixed(1)} s`,
    );
    return EXIT.ok;
  },
};

async function flashEspruinoBoard(port: string, modulePath: string | undefined, baudText: string | undefined): Promise<number> {
  const baudRate = baudText === undefined ? undefined : Number(baudText);
  if (baudRate !== undefined && (!Number.isInteger(baudRate) || baudRate < 300 || baudRate > 2_000_000)) {
    throw new UsageError(`--baud must be a whole number of baud from 300 to 2000000, not '${baudText}'`);
  }
  const path = modulePath ?? ESPRUINO_MODULE_PATH;
  let source: string;
  try {
    source = readEspruinoModule(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `module not found: ${path}` : `cannot read module ${path}: ${(err as Error).message}`, { cause: err });
  }
  const progress = new ProgressReporter(process.stderr);
  const result = await flashEspruino({ path: port, baudRate, source, onProgress: (p) => progress.update(uploadStep(p)) }).finally(() => progress.end());
  const { hello } = result;
  console.log(
    `tether flash: uploaded ${path} (${result.sentBytes} bytes) to ${port} and saved it in ${(result.durationMs / 1000).toFixed(1)} s; ` +
      `the board answers HELLO as '${hello.name}' (boot ${hello.bootId})`,
  );
  return EXIT.ok;
}

const UPLOAD_PHASES: Record<UploadProgress['phase'], string> = {
  connect: 'connecting',
  prepare: 'resetting',
  send: 'uploading',
  save: 'saving',
  verify: 'verifying',
  done: 'done',
};

/** An upload step as a progress line: the module's bytes sent so far. */
function uploadStep(p: UploadProgress): Step {
  return { phase: UPLOAD_PHASES[p.phase], done: p.sentBytes, total: p.totalBytes };
}

/** One step of a flash or an upload, for the progress line. */
interface Step {
  phase: string;
  done: number;
  total: number;
}

const BAR_WIDTH = 20;
/** Off a TTY, one plain line per this many percent. */
const PLAIN_STEP_PERCENT = 25;

/**
 * On a TTY: one line rewritten in place, `writing [#####     ] 45% 3.5/7.7 KB`.
 * Elsewhere (logs, CI): a plain line at the start of each phase and every 25%.
 */
class ProgressReporter {
  private readonly tty: boolean;
  private lineOpen = false;
  private lastPhase: string | null = null;
  private lastStep = -1;

  constructor(private readonly out: NodeJS.WriteStream) {
    this.tty = Boolean(out.isTTY);
  }

  update(p: Step | FlashProgress): void {
    if (p.phase === 'done') return;
    const percent = p.total === 0 ? 100 : Math.floor((p.done * 100) / p.total);
    const kb = (n: number) => (n / 1000).toFixed(1);
    const phaseChanged = p.phase !== this.lastPhase;
    this.lastPhase = p.phase;
    if (this.tty) {
      const filled = Math.round((percent / 100) * BAR_WIDTH);
      const bar = `${'#'.repeat(filled)}${' '.repeat(BAR_WIDTH - filled)}`;
      if (phaseChanged && this.lineOpen) this.out.write('\n');
      this.out.write(`\r${p.phase.padEnd(9)} [${bar}] ${String(percent).padStart(3)}% ${kb(p.done)}/${kb(p.total)} KB`);
      this.lineOpen = true;
      return;
    }
    const step = Math.floor(percent / PLAIN_STEP_PERCENT);
    if (!phaseChanged && step === this.lastStep) return;
    this.lastStep = step;
    this.out.write(`${p.phase} ${percent}% ${kb(p.done)}/${kb(p.total)} KB\n`);
  }

  end(): void {
    if (this.lineOpen) this.out.write('\n');
    this.lineOpen = false;
  }
}
