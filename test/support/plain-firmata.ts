import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BUILD = fileURLToPath(new URL('../../firmware/avr/build.sh', import.meta.url));

/**
 * Builds the plain-Firmata variant of our firmware (no keepalive extension; behaves at boot
 * as StandardFirmata does) into a temporary file and returns its path.
 */
export function buildPlainFirmata(): string {
  const hexPath = join(mkdtempSync(join(tmpdir(), 'tether-plain-')), 'plain.hex');
  execFileSync('bash', [BUILD, '--plain-firmata', hexPath], { stdio: 'ignore' });
  return hexPath;
}
