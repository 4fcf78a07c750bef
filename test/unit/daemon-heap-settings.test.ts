import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { applyDaemonHeapSettings, DAEMON_HEAP_GROWING_PERCENT } from '../../cli/daemon-heap-settings.ts';

describe('applyDaemonHeapSettings', () => {
  it('leaves a growing factor the operator chose (node flag or NODE_OPTIONS) alone', () => {
    expect(applyDaemonHeapSettings(['--heap-growing-percent=50'], '')).toBeNull();
    expect(applyDaemonHeapSettings([], '--max-old-space-size=4096 --heap_growing_percent=80')).toBeNull();
  });

  it('sets it otherwise; set at run time it takes effect (the same churn: a smaller heap than with a loose factor)', async () => {
    expect(applyDaemonHeapSettings(['--max-semi-space-size=4'], '')).toBe(`--heap-growing-percent=${DAEMON_HEAP_GROWING_PERCENT}`);
    // A process that keeps a tenth of what it makes, the factor set at run time as the daemon does; its peak heap.
    const churn = (percent: number) => {
      const code = `
        require('node:v8').setFlagsFromString('--heap-growing-percent=${percent}');
        let keep = [], peak = 0;
        for (let round = 0; round < 300; round++) {
          for (let i = 0; i < 20000; i++) { const o = { a: i, b: [i, i + 1], c: 'x' + i }; if (i % 10 === 0) keep.push(o); }
          if (keep.length > 200000) keep = keep.slice(-100000);
          peak = Math.max(peak, process.memoryUsage().heapTotal);
        }
        process.stdout.write(String(peak));`;
      const out = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 120_000 });
      expect(out.status).toBe(0);
      return Number(out.stdout);
    };
    // Peak heap: 96 against 112-114 MiB here (the heap at one moment depends on when V8 last collected).
    expect(churn(DAEMON_HEAP_GROWING_PERCENT)).toBeLessThan(churn(400) * 0.95);
  });
});
