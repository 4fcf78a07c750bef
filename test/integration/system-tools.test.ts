import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';

// The integration suites need these programs. A missing one fails here with a clear
// message instead of some suite failing obscurely (and nothing is ever skipped).
const tools: Array<[string, string[], string]> = [
  ['socat', ['-V'], 'socat'],
  ['avr-gcc', ['--version'], 'gcc-avr'],
  ['avr-objcopy', ['--version'], 'binutils-avr'],
];

describe('system tools the integration tests use', () => {
  it.each(tools)('%s is installed', (tool, args, pkg) => {
    let found = true;
    try {
      execFileSync(tool, args, { stdio: 'ignore' });
    } catch {
      found = false;
    }
    expect(found, `${tool} is missing: apt-get install ${pkg} (scripts/test-all.sh does this)`).toBe(true);
  });
});
