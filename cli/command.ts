export interface Command {
  name: string;
  help: string;
  /** Resolves with the process exit code. */
  run(argv: string[]): Promise<number>;
}
