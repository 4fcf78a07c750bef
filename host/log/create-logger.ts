import pino from 'pino';
import pretty from 'pino-pretty';
import { LazyChildLogger, type LevelAwareLogger } from './lazy-child-logger.ts';
import type { Logger } from './logger.ts';

/**
 * The daemon's logger: JSON lines on stdout (pino) for machines and journald, or pretty
 * lines when stdout is a terminal (or `format` says so).
 */
export function createLogger(level: string, format: 'auto' | 'json' | 'pretty' = 'auto'): Logger {
  const human = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  const destination = human
    ? pretty({ colorize: process.stdout.isTTY === true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname', sync: true })
    : pino.destination({ dest: 1, sync: true });
  // Children (several per board) are made when they first log: lazy-child-logger.ts.
  return LazyChildLogger.of(pino({ level, base: { pid: process.pid } }, destination) as unknown as LevelAwareLogger);
}
