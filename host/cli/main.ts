import type { Command } from './command.ts';
import { daemonCommand } from './commands/daemon.ts';
import { demoCommand } from './commands/demo.ts';
import { emulateCommand } from './commands/emulate.ts';
import { flashCommand } from './commands/flash.ts';
import { portsCommand } from './commands/ports.ts';
import { statusCommand } from './commands/status.ts';
import { EXIT, UsageError } from './usage-error.ts';

const commands: Command[] = [daemonCommand, demoCommand, emulateCommand, flashCommand, portsCommand, statusCommand];

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
  const command = commands.find((c) => c.name === name);
  if (!command) {
    console.error(`tether: unknown command '${name}'\n\n${help}`);
    return EXIT.usage;
  }
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
