import { mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * An environment whose PATH is a fresh directory holding only `node` (a symlink to this
 * Node): what a machine with nothing but Node installed offers a child process (no socat,
 * no mosquitto_sub, no avrdude).
 */
export function nodeOnlyEnv(): NodeJS.ProcessEnv {
  const bin = mkdtempSync(join(tmpdir(), 'tether-node-only-'));
  symlinkSync(process.execPath, join(bin, 'node'));
  return { ...process.env, PATH: bin };
}
