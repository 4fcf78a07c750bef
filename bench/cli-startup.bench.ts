// `tether --help`: start time and peak RSS of the compiled CLI, which loads its commands
// lazily, against the same compiled CLI with every command module loaded up front (what
// `--help` cost before the commands were made lazy: johnny-five, aedes, avr8js, mqtt, ...).
// Each variant runs RUNS times, interleaved; medians. The child reports its own peak RSS
// (process.resourceUsage().maxRSS) from an exit hook.
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { percentile, type Row } from './support.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.env.TETHER_BENCH_CLI_RUNS ?? 7);
const EXIT_HOOK = `data:text/javascript,${encodeURIComponent("process.on('exit', () => process.stderr.write('maxrss ' + process.resourceUsage().maxRSS + '\\n'));")}`;
const EAGER = `
  for (const c of ['daemon', 'demo', 'emulate', 'flash', 'ports', 'status']) await import('./dist/cli/commands/' + c + '.js');
  await import('./bin/tether.js');`;

function run(args: string[]): { ms: number; rssKiB: number } {
  const t0 = performance.now();
  const child = spawnSync(process.execPath, ['--import', EXIT_HOOK, ...args], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  const ms = performance.now() - t0;
  const rss = /maxrss (\d+)/.exec(child.stderr ?? '');
  if (child.error) throw new Error(`tether --help did not finish within 60 s: ${child.error.message}`);
  if (child.status !== 0 || !rss || !child.stdout.includes('Usage: tether')) throw new Error(`tether --help failed: ${child.stderr}`);
  return { ms, rssKiB: Number(rss[1]) };
}

export async function cliStartup(): Promise<Row[]> {
  execFileSync(process.execPath, [fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)), '-p', 'tsconfig.build.json'], { cwd: ROOT, timeout: 300_000 });
  const lazy: Array<{ ms: number; rssKiB: number }> = [];
  const eager: Array<{ ms: number; rssKiB: number }> = [];
  for (let i = 0; i < RUNS; i++) {
    lazy.push(run(['bin/tether.js', '--help']));
    eager.push(run(['--input-type=module', '-e', EAGER, 'tether', '--help']));
  }
  const med = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
  const l = { ms: med(lazy.map((r) => r.ms)), mib: med(lazy.map((r) => r.rssKiB)) / 1024 };
  const e = { ms: med(eager.map((r) => r.ms)), mib: med(eager.map((r) => r.rssKiB)) / 1024 };
  return [
    {
      benchmark: `tether --help: wall time (median of ${RUNS})`,
      measured: `${l.ms.toFixed(0)} ms`,
      limit: `${e.ms.toFixed(0)} ms with every command loaded`,
      ratio: `${(l.ms / e.ms).toFixed(2)}x`,
    },
    {
      benchmark: `tether --help: peak RSS (median of ${RUNS})`,
      measured: `${l.mib.toFixed(1)} MiB`,
      limit: `${e.mib.toFixed(1)} MiB with every command loaded`,
      ratio: `${(l.mib / e.mib).toFixed(2)}x`,
    },
  ];
}
