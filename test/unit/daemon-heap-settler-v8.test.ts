import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Two child processes that each keep a core busy for ~13 s: this file runs alone, after the
// others (vitest.config.ts), so that the emulator tests paced to real time never share the
// cores with it.
describe('HeapSettler on the real V8', () => {
  it('a fragmented old generation of a process that keeps allocating shrinks with the settler, and not without it', () => {
    // A process that made 400,000 objects, kept a scattered fifth of them (promoted, then mostly
    // dead: the old generation's pages stay), and keeps allocating a trickle, as the daemon does.
    const settlerUrl = new URL('../../cli/daemon-heap-settler.ts', import.meta.url).href;
    const run = (settle: boolean) => {
      const code = `
        import v8 from 'node:v8';
        import { HeapSettler } from ${JSON.stringify(settlerUrl)};
        v8.setFlagsFromString('--heap-growing-percent=50');
        const silent = { debug() {}, info() {}, warn() {}, error() {}, child() { return silent; } };
        let keep = [];
        for (let i = 0; i < 400000; i++) keep.push({ a: i, b: [i, i + 1], c: 'x' + i, d: new Array(8).fill(i) });
        for (let r = 0; r < 50; r++) { const junk = []; for (let i = 0; i < 20000; i++) junk.push({ r, i }); }
        const live = keep.filter((_, i) => i % 5 === 0);
        keep = null;
        let trickle = [];
        const tick = setInterval(() => { for (let i = 0; i < 2000; i++) trickle.push({ i, s: 'y' + i }); if (trickle.length > 20000) trickle = []; }, 5);
        const committed = () => v8.getHeapStatistics().total_heap_size;
        const clock = { now: () => performance.now(), setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (h) => clearTimeout(h) };
        const settler = new HeapSettler({ clock, logger: silent, execArgv: [], nodeOptions: '', quietMs: 1000, reduceMs: 8000, minSessions: 1 });
        setTimeout(() => {
          const before = committed();
          if (${settle}) settler.sessionUp();
          setTimeout(() => {
            clearInterval(tick);
            settler.stop();
            process.stdout.write(JSON.stringify({ before, after: committed(), live: live.length, settles: settler.settles }));
          }, 10000);
        }, 3000);`;
      const out = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
        encoding: 'utf8',
        timeout: 60_000,
        cwd: fileURLToPath(new URL('../..', import.meta.url)),
      });
      expect(out.status, out.stderr).toBe(0);
      return JSON.parse(out.stdout) as { before: number; after: number; settles: number };
    };
    // Here: 146 -> 68 MiB settled, 145 -> 149 MiB left alone. V8's memory reducer may also
    // shrink the control on its own when the machine starves it (its allocation rate looks low):
    // in CI twice, 126 -> 80 and 128 -> 78 MiB. So the pair runs again, up to three times, until
    // one pair shows the difference; a settler that does nothing never passes.
    const pairs: string[] = [];
    const mib = (r: { before: number; after: number }) => `${(r.before / 2 ** 20).toFixed(0)} -> ${(r.after / 2 ** 20).toFixed(0)} MiB`;
    let shown = false;
    for (let attempt = 1; attempt <= 3 && !shown; attempt++) {
      const settled = run(true);
      const left = run(false);
      expect(settled.settles).toBe(1);
      expect(left.settles).toBe(0);
      pairs.push(`settled ${mib(settled)}, left alone ${mib(left)}`);
      shown = settled.after < settled.before * 0.7 && left.after > left.before * 0.85;
    }
    expect(shown, `no pair where the settled heap fell below 70 % and the control stayed above 85 %: ${pairs.join('; ')}`).toBe(true);
  }, 200_000);
});
