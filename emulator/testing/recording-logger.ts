import type { Logger } from '../../host/log/logger.ts';

export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: object;
  msg?: string;
}

/** A logger that keeps what it was told, for tests that assert on the log. */
export class RecordingLogger implements Logger {
  constructor(
    readonly records: LogRecord[] = [],
    private readonly bindings: object = {},
  ) {}
  debug(obj: object, msg?: string) {
    this.records.push({ level: 'debug', obj: { ...this.bindings, ...obj }, msg });
  }
  info(obj: object, msg?: string) {
    this.records.push({ level: 'info', obj: { ...this.bindings, ...obj }, msg });
  }
  warn(obj: object, msg?: string) {
    this.records.push({ level: 'warn', obj: { ...this.bindings, ...obj }, msg });
  }
  error(obj: object, msg?: string) {
    this.records.push({ level: 'error', obj: { ...this.bindings, ...obj }, msg });
  }
  child(bindings: object): Logger {
    return new RecordingLogger(this.records, { ...this.bindings, ...bindings });
  }
}
