/**
 * What an Espruino board prints on its console (besides tether frames), line by line, with the
 * lines that report a problem told apart: Espruino prints an uncaught exception as
 * `Uncaught <Error>: <message>` followed by context lines (` at line N col M`, the code, a `^`
 * marker, `in function "f" called from ...`), and its own errors and warnings as `ERROR: ...`,
 * `WARNING: ...`, `New interpreter error: ...` (e.g. FIFO_FULL) and `Execution Interrupted`.
 * Those should reach a log at warn level; the rest (banner, prompts, print() output, save()'s
 * progress) is chatter at debug level. Pure: no I/O, no timers.
 */
import type { Logger } from '../log/logger.ts';

export type ConsoleLevel = 'warn' | 'debug';

/** Lines that start a problem report. */
const PROBLEM = /^(Uncaught\b|ERROR\b|WARNING\b|New interpreter error\b|Execution Interrupted\b)/;
/**
 * How many lines after a problem line belong to it (` at line`, the code, the `^` marker,
 * `in function ...` and its code and marker), up to a blank line or a prompt.
 */
const MAX_CONTEXT_LINES = 8;
/** A line longer than this is passed on without waiting for its end. */
const MAX_LINE = 1024;

/** Whether a console line starts a problem report. */
export function isProblemLine(line: string): boolean {
  return PROBLEM.test(line.replace(/^[>:]+/, ''));
}

/** Collects console text into lines (across chunks) and classifies each. */
export class EspruinoConsoleLines {
  private partial = '';
  private contextLeft = 0;

  constructor(private readonly onLine: (line: string, level: ConsoleLevel) => void) {}

  push(text: string): void {
    for (const char of text) {
      if (char === '\n') {
        this.emitLine();
      } else if (char === '\b' || char === '\x7f') {
        this.partial = this.partial.slice(0, -1); // a spinner or line editing
      } else if (char !== '\r') {
        this.partial += char;
        if (this.partial.length >= MAX_LINE) this.emitLine();
      }
    }
  }

  /** Passes on a line still waiting for its end (e.g. when the port closes). */
  flush(): void {
    if (this.partial !== '') this.emitLine();
  }

  private emitLine(): void {
    const raw = this.partial;
    this.partial = '';
    // A prompt (`>`, or `:` inside a multi-line statement) means the report above has ended.
    const line = raw.replace(/^[>:]+/, '');
    if (line !== raw || line.trim() === '') this.contextLeft = 0;
    if (line.trim() === '') return;
    if (PROBLEM.test(line)) {
      this.contextLeft = MAX_CONTEXT_LINES;
      this.onLine(line, 'warn');
    } else if (this.contextLeft > 0) {
      this.contextLeft--;
      this.onLine(line, 'warn');
    } else {
      this.onLine(line, 'debug');
    }
  }
}

/**
 * An `onConsole` for EspruinoReplTransport that logs the board's console: problem reports at
 * warn (so they show at the default level), everything else at debug.
 *
 *   new EspruinoReplTransport(inner, { onConsole: espruinoConsoleLogger(log) })
 */
export function espruinoConsoleLogger(logger: Logger): (text: string) => void {
  const lines = new EspruinoConsoleLines((line, level) => {
    if (level === 'warn') logger.warn({ line }, `Espruino board reports: ${line}`);
    else logger.debug({ text: line }, 'Espruino console output');
  });
  return (text) => lines.push(text);
}
