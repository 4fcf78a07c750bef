import v8 from 'node:v8';

/**
 * The V8 old-generation growing factor the daemon runs with: the heap may grow to 1.5x what
 * survived the last full collection before the next one (V8's default is dynamic, 1.1x to 4x,
 * and with a fleet's steady trickle of garbage it let the heap grow to 2-3x the live data:
 * RSS 4x the live heap at 1,000 boards). Costs CPU in more frequent full collections: 1.2x
 * made the collector a quarter of the daemon's busy time at 1,000 boards and slowed the start
 * of 5,000 boards to 123 s (1.5x: 59 s, RSS per board 145 KiB against 134); measured in
 * docs/benchmarks-issue15-fleet.md.
 */
export const DAEMON_HEAP_GROWING_PERCENT = 50;

/**
 * Sets the growing factor unless the operator chose one (node flag or NODE_OPTIONS). V8 reads
 * it at every heap-limit computation, so setting it at run time takes effect (unlike the
 * young generation's size: `--max-semi-space-size` goes on the node command line, see
 * packaging/tether.service). Returns the flag set, or null.
 */
export function applyDaemonHeapSettings(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string | null {
  if (operatorGaveFlag('heap-growing-percent', execArgv, nodeOptions)) return null;
  const flag = `--heap-growing-percent=${DAEMON_HEAP_GROWING_PERCENT}`;
  v8.setFlagsFromString(flag);
  return flag;
}

/**
 * Whether the node flag `name` (dashes or underscores, as V8 takes either) is on the daemon's
 * command line or in NODE_OPTIONS: then it is the operator's, and the daemon leaves it alone.
 */
export function operatorGaveFlag(name: string, execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  const pattern = new RegExp(name.split('-').join('[-_]'));
  return [...execArgv, nodeOptions].some((arg) => pattern.test(arg));
}
