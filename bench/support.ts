import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BUILD = fileURLToPath(new URL('../firmware/avr/build.sh', import.meta.url));

/** Our firmware built at another baud rate, into a temp file. */
export function firmwareAtBaud(baud: number): string {
  const out = join(mkdtempSync(join(tmpdir(), 'tether-bench-')), `tether-${baud}.hex`);
  execFileSync('bash', [BUILD, '--baud', String(baud), out], { stdio: 'ignore' });
  return out;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface Row {
  benchmark: string;
  measured: string;
  limit: string;
  ratio: string;
}

export function printTable(title: string, rows: Row[]): void {
  const header: Row = { benchmark: 'benchmark', measured: 'measured', limit: 'limit / baseline', ratio: 'ratio' };
  const cols = ['benchmark', 'measured', 'limit', 'ratio'] as const;
  const widths = cols.map((c) => Math.max(...[header, ...rows].map((r) => r[c].length)));
  console.log(`\n${title}`);
  for (const r of [header, ...rows]) console.log(`| ${cols.map((c, i) => r[c].padEnd(widths[i]!)).join(' | ')} |`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Rejects with a message naming `what` unless `promise` settles within `ms`: a bench never hangs. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`bench: timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when `emitter` emits `event`, or rejects after `ms` naming `what`. */
export function onceWithin(emitter: { once(event: string, listener: (...args: any[]) => void): unknown }, event: string, ms: number, what: string): Promise<unknown> {
  return withDeadline(new Promise((resolve) => emitter.once(event, resolve)), ms, what);
}
