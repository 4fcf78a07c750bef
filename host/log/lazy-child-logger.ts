import type { Logger } from './logger.ts';

/** What the lazy children need of the root logger (pino has it). */
export interface LevelAwareLogger extends Logger {
  isLevelEnabled(level: string): boolean;
}

/**
 * A child logger that is made only when it first logs at an enabled level. Every board has
 * eight or so children (device, port, transport, session, MQTT, outbox, pump), and a pino
 * child costs about 1.5 KiB (its bindings, serialised, and a log function per level): 12 KiB a
 * board that, at level warn, almost never logs. Here a child costs one small object until then.
 * The output is pino's own (the real child gets the same bindings, in the same order).
 */
export class LazyChildLogger implements Logger {
  private made: Logger | undefined;

  private constructor(
    private readonly root: LevelAwareLogger,
    private readonly parent: LazyChildLogger | null,
    private readonly bindings: object,
  ) {}

  /** `root` itself for its own lines, with lazy children. */
  static of(root: LevelAwareLogger): Logger {
    return new LazyChildLogger(root, null, {});
  }

  /** Whether the underlying child exists yet (tests). */
  get materialised(): boolean {
    return this.parent === null || this.made !== undefined;
  }

  debug(obj: object, msg?: string): void {
    if (this.root.isLevelEnabled('debug')) write(this.real(), 'debug', obj, msg);
  }

  info(obj: object, msg?: string): void {
    if (this.root.isLevelEnabled('info')) write(this.real(), 'info', obj, msg);
  }

  warn(obj: object, msg?: string): void {
    if (this.root.isLevelEnabled('warn')) write(this.real(), 'warn', obj, msg);
  }

  error(obj: object, msg?: string): void {
    if (this.root.isLevelEnabled('error')) write(this.real(), 'error', obj, msg);
  }

  child(bindings: object): Logger {
    return new LazyChildLogger(this.root, this, bindings);
  }

  private real(): Logger {
    if (this.parent === null) return this.root;
    return (this.made ??= this.parent.real().child(this.bindings));
  }
}

function write(logger: Logger, level: 'debug' | 'info' | 'warn' | 'error', obj: object, msg: string | undefined): void {
  if (msg === undefined) logger[level](obj);
  else logger[level](obj, msg);
}
