import v8 from 'node:v8';

/**
 * The V8 old-generation growing factor the daemon runs with: the heap may grow to 1.2x what
 * survived the last full collection before the next one (V8's default is dynamic, 1.1x to 4x,
 * and with a fleet's steady trickle of garbage it let the heap grow to 2-3x the live data:
 * RSS 4x the live heap at 1,000 boards). Costs some CPU in more frequent (incremental,
 * concurrent) full collections; measured in docs/benchmarks-issue15-fleet.md.
 */
export const DAEMON_HEAP_GROWING_PERCENT = 20;

/**
 * Sets the growing factor unless the operator chose one (node flag or NODE_OPTIONS). V8 reads
 * it at every heap-limit computation, so setting it at run time takes effect (unlike the
 * young generation's size: `--max-semi-space-size` goes on the node command line, see
 * packaging/tether.service). Returns the flag set, or null.
 */
export function applyDaemonHeapSettings(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string | null {
  const chosen = [...execArgv, nodeOptions].some((arg) => /heap[-_]growing[-_]percent/.test(arg));
  if (chosen) return null;
  const flag = `--heap-growing-percent=${DAEMON_HEAP_GROWING_PERCENT}`;
  v8.setFlagsFromString(flag);
  return flag;
}
