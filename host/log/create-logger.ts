import pino from 'pino';
import type { Logger } from './logger.ts';

/** The daemon's logger: JSON lines on stdout (pino), at the configured level. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { pid: process.pid } }, pino.destination({ dest: 1, sync: true })) as unknown as Logger;
}
