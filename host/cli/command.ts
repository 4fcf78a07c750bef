export interface Command {
  name: string;
  summary: string;
  help: string;
  /** Resolves with the process exit code. */
  run(argv: string[]): Promise<number>;
}
