import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { BoardOnTcp } from '../../emulator/avr/board-on-tcp.ts';
import { PtyBridgeError } from '../../emulator/avr/pty-bridge.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import type { Command } from '../command.ts';
import { EXIT, UsageError } from '../usage-error.ts';

const help = `Usage: tether emulate [--pty <path> | --tcp <port>] [options]

Runs an emulated Arduino Uno (ATmega328P, 16 MHz, avr8js) with tether's firmware, paced to
real time, and exposes its serial port to any serial program: as a pty (made by socat), or
with --tcp on a TCP port as ser2net serves a real board (raw bytes, one client at a time;
needs nothing but Node).

Options:
  --pty <path>         where to create the serial port link (default: ${join(tmpdir(), 'tether-uno')});
                       needs socat
  --tcp <port>         serve the serial port on this TCP port instead of a pty (0: any free
                       port); tether takes tcp://127.0.0.1:<port>, avrdude -P net:127.0.0.1:<port>
  --host <address>     address --tcp listens on (default 127.0.0.1)
  --hex <file>         application image (default: the shipped firmware/avr/tether.hex)
  --bootloader <file>  bootloader image (Optiboot); resets then start in the boot section,
                       and an STK500 sync from a client that just connected (TCP) or after
                       1 s of silence resets the board first (the DTR auto-reset neither a
                       pty nor TCP can carry), so avrdude and tether flash work
  --eeprom <file>      keep the EEPROM in this file across runs (default: in memory)
  --speed <factor>     emulated seconds per real second (default: 1)
  --json               print events as JSON lines (for scripts)

Commands on standard input, one per line:
  reset | power-cycle | brown-out | freeze | thaw | unplug | replug
  pin <0-19> <0|1>     drive an input pin     analog <0-5> <volts>  set an ADC input
  stats                print counters         help                  list commands`;

export const emulateCommand: Command = {
  name: 'emulate',
  help,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        pty: { type: 'string' },
        tcp: { type: 'string' },
        host: { type: 'string' },
        hex: { type: 'string' },
        bootloader: { type: 'string' },
        eeprom: { type: 'string' },
        speed: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
    const speed = values.speed === undefined ? 1 : Number(values.speed);
    if (!(speed > 0) || !Number.isFinite(speed)) throw new UsageError(`--speed must be a positive number, not '${values.speed}'`);
    const json = values.json;
    const say = (event: string, fields: Record<string, unknown>, text: string) => {
      if (json) console.log(JSON.stringify({ event, ...fields }));
      else console.log(text);
    };

    let tcpPort: number | undefined;
    if (values.tcp !== undefined) {
      tcpPort = Number(values.tcp);
      if (!/^\d+$/.test(values.tcp) || tcpPort > 65535) throw new UsageError(`--tcp takes a TCP port number (0-65535), not '${values.tcp}'`);
      if (values.pty !== undefined) throw new UsageError('--pty and --tcp are two ways to serve the one serial port: give one');
    } else if (values.host !== undefined) {
      throw new UsageError('--host goes with --tcp');
    }

    const hexPath = values.hex ?? FIRMWARE_HEX_PATH;
    const common = { hexPath, bootloaderPath: values.bootloader, eepromPath: values.eeprom, speed };
    let board: BoardOnPty | BoardOnTcp;
    if (tcpPort !== undefined) {
      const tcp = await BoardOnTcp.start({ ...common, host: values.host, port: tcpPort });
      tcp.on('connect', (remote) => say('connect', { remote }, `client connected from ${remote}`));
      tcp.on('disconnect', (remote) => say('disconnect', { remote }, `client ${remote} disconnected`));
      tcp.on('refused', (remote, reason) => say('refused', { remote, reason }, `client ${remote} refused (${reason})`));
      const netHost = tcp.host.includes(':') ? `[${tcp.host}]` : tcp.host;
      say(
        'ready',
        { tcp: tcp.url, host: tcp.host, port: tcp.port, hex: hexPath, speed },
        `tether emulate: Arduino Uno running ${hexPath}\nserial port: ${tcp.url} (raw TCP, one client at a time; avrdude: -P net:${netHost}:${tcp.port})\ntype 'help' for commands; Ctrl-C to stop`,
      );
      board = tcp;
    } else {
      const ptyPath = values.pty ?? join(tmpdir(), 'tether-uno');
      let pty: BoardOnPty;
      try {
        pty = await BoardOnPty.start({ ...common, ptyPath });
      } catch (err) {
        if (err instanceof PtyBridgeError && err.code === 'socat-missing') {
          throw new Error('socat is not installed, and a pty needs it (Debian: apt-get install socat); or serve the board over TCP instead, which needs nothing more: tether emulate --tcp 2000');
        }
        throw err;
      }
      pty.bridge.on('exit', (code) => say('error', { message: `socat exited (${code})` }, `socat exited unexpectedly (code ${code})`));
      say(
        'ready',
        { pty: ptyPath, device: pty.bridge.devicePath, hex: hexPath, speed },
        `tether emulate: Arduino Uno running ${hexPath}\nserial port: ${ptyPath} (-> ${pty.bridge.devicePath})\ntype 'help' for commands; Ctrl-C to stop`,
      );
      board = pty;
    }
    const { uno } = board;
    const where = tcpPort !== undefined ? { tcp: (board as BoardOnTcp).url } : { pty: (board as BoardOnPty).bridge.linkPath };
    uno.on('reset', (cause) => say('reset', { cause }, `board reset (${cause})`));
    uno.on('sleep', (mode) => say('sleep', { mode }, `MCU asleep (${mode})`));
    uno.on('wake', () => say('wake', {}, 'MCU awake'));
    uno.on('pin', (pin, high) => {
      if (json) say('pin', { pin, high }, '');
    });

    const commands: Record<string, (args: string[]) => Promise<void> | void> = {
      reset: () => uno.reset(),
      'power-cycle': () => uno.powerCycle(),
      'brown-out': () => uno.brownOut(),
      freeze: () => uno.freeze(),
      thaw: () => uno.thaw(),
      unplug: async () => {
        await board.unplug();
        say('unplugged', {}, 'unplugged');
      },
      replug: async () => {
        await board.replug();
        say('replugged', where, `plugged in again at ${Object.values(where)[0]}`);
      },
      pin: ([pin, level]) => {
        const n = Number(pin);
        if (level !== '0' && level !== '1') throw new UsageError(`pin level must be 0 or 1, not '${level}'`);
        uno.setDigitalInput(n, level === '1');
      },
      analog: ([channel, volts]) => {
        const v = Number(volts);
        if (!Number.isFinite(v) || v < 0 || v > 5) throw new UsageError(`volts must be 0-5, not '${volts}'`);
        uno.setAnalogInput(Number(channel), v);
      },
      stats: () => {
        const stats = uno.stats;
        say('stats', { ...stats, mode: uno.runMode }, JSON.stringify({ ...stats, mode: uno.runMode }, null, 2));
      },
      help: () => console.log(help.slice(help.indexOf('Commands on standard input'))),
    };

    return await new Promise<number>((resolve) => {
      let stopping = false;
      const stop = async () => {
        if (stopping) return;
        stopping = true;
        rl?.close();
        await board.close();
        resolve(EXIT.ok);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const rl = process.stdin.isTTY || !process.stdin.readableEnded ? createInterface({ input: process.stdin }) : null;
      rl?.on('line', async (line) => {
        const [name, ...args] = line.trim().split(/\s+/);
        if (!name) return;
        const handler = commands[name];
        if (!handler) {
          say('error', { message: `unknown command '${name}'` }, `unknown command '${name}' (try 'help')`);
          return;
        }
        try {
          await handler(args);
          say('ok', { command: name }, json ? '' : 'ok');
        } catch (err) {
          say('error', { command: name, message: (err as Error).message }, `error: ${(err as Error).message}`);
        }
      });
    });
  },
};
