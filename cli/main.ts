import type { Command } from './command.ts';
import { EXIT, UsageError } from './usage-error.ts';

/**
 * The commands, each loaded only when run: `tether --help` loads none of them (no broker,
 * no emulator, no Johnny-Five).
 */
const commands: Array<{ name: string; summary: string; load: () => Promise<Command> }> = [
  { name: 'daemon', summary: 'run the host daemon for the configured boards', load: async () => (await import('./commands/daemon.ts')).daemonCommand },
  { name: 'demo', summary: 'an emulated Uno, the embedded broker and the daemon, with live status', load: async () => (await import('./commands/demo.ts')).demoCommand },
  { name: 'emulate', summary: 'run an emulated Uno with tether firmware on a pty or a TCP port', load: async () => (await import('./commands/emulate.ts')).emulateCommand },
  { name: 'flash', summary: "write tether's firmware to a board over its bootloader", load: async () => (await import('./commands/flash.ts')).flashCommand },
  { name: 'ports', summary: 'list serial ports with vendor/product ids', load: async () => (await import('./commands/ports.ts')).portsCommand },
  { name: 'probe', summary: "measure a path's idle timeout (broker or tcp:// bridge) and the keepalive interval to use", load: async () => (await import('./commands/probe.ts')).probeCommand },
  { name: 'status', summary: 'devices a broker knows about, with their state and keepalive facts', load: async () => (await import('./commands/status.ts')).statusCommand },
];

const help = `Usage: tether <command> [options]

tether keeps microcontrollers alive, awake and online.

Commands:
${commands.map((c) => `  ${c.name.padEnd(10)} ${c.summary}`).join('\n')}

Run 'tether <command> --help' for a command's options.`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help);
    return name ? EXIT.ok : EXIT.usage;
  }
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    console.error(`tether: unknown command '${name}'\n\n${help}`);
    return EXIT.usage;
  }
  const command = await entry.load();
  // Every command's --help is handled here, from its help text.
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.help);
    return EXIT.ok;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    const e = err as Error & { code?: string };
    if (err instanceof UsageError || e.code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`tether ${name}: ${e.message}\n\n${command.help}`);
      return EXIT.usage;
    }
    console.error(`tether ${name}: ${e.message}`);
    return EXIT.failure;
  }
}

const code = await main(process.argv.slice(2));
// A command that returned has finished its work: do not wait on stray handles
// (Johnny-Five keeps timers that it never clears).
process.exit(code);
