import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { applyDaemonHeapSettings, DAEMON_HEAP_GROWING_PERCENT } from '../../cli/daemon-heap-settings.ts';

describe('applyDaemonHeapSettings', () => {
  it('leaves a growing factor the operator chose (node flag or NODE_OPTIONS) alone', () => {
    expect(applyDaemonHeapSettings(['--heap-growing-percent=50'], '')).toBeNull();
    expect(applyDaemonHeapSettings([], '--max-old-space-size=4096 --heap_growing_percent=80')).toBeNull();
  });

  it('sets it otherwise, and V8 then keeps the heap closer to what survives (a process that keeps a tenth of what it makes)', () => {
    expect(applyDaemonHeapSettings(['--max-semi-space-size=4'], '')).toBe(`--heap-growing-percent=${DAEMON_HEAP_GROWING_PERCENT}`);
    // The same churn with and without the setting made at run time, each in a fresh process.
    const churn = (set: boolean) => {
      const code = `
        ${set ? `require('node:v8').setFlagsFromString('--heap-growing-percent=${DAEMON_HEAP_GROWING_PERCENT}');` : ''}
        let keep = [];
        for (let round = 0; round < 300; round++) {
          for (let i = 0; i < 20000; i++) { const o = { a: i, b: [i, i + 1], c: 'x' + i }; if (i % 10 === 0) keep.push(o); }
          if (keep.length > 200000) keep = keep.slice(-100000);
        }
        process.stdout.write(String(process.memoryUsage().heapTotal));`;
      const out = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 120_000 });
      expect(out.status).toBe(0);
      return Number(out.stdout);
    };
    const without = churn(false);
    const withSetting = churn(true);
    expect(withSetting).toBeLessThan(without * 0.8);
  });
});
