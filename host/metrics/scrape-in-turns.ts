import { performance } from 'node:perf_hooks';
import { ExpositionBuffer, type MetricFamily } from './metric-family.ts';

export interface ScrapeOptions {
  /** Only these families (by name, in the families' order); empty: all. */
  names?: readonly string[];
  /** Longest stretch of the event loop one turn of the scrape takes (ms). */
  budgetMs?: number;
  /** Text handed to `write` at a time (characters), at least. */
  chunkChars?: number;
}

/**
 * The text exposition of `families`, handed to `write` in chunks, letting the event loop run
 * whenever a turn has taken `budgetMs`. prom-client formats a metric in one go: at 9,900 boards
 * one metric took seconds (a heartbeat is 1 s), and a whole scrape took 6-32 s. A `write` that
 * returns a promise (a socket's back-pressure) is awaited; if it throws, the scrape ends with it.
 */
export async function scrapeInTurns<C>(
  families: ReadonlyArray<MetricFamily<C>>,
  context: C,
  write: (chunk: string) => void | Promise<void>,
  options: ScrapeOptions = {},
): Promise<void> {
  const wanted = options.names && options.names.length > 0 ? new Set(options.names) : null;
  const budgetMs = options.budgetMs ?? 4;
  const chunkChars = options.chunkChars ?? 64 * 1024;
  const out = new ExpositionBuffer();
  let turnStarted = performance.now();
  let first = true;
  const pause = async () => {
    if (out.length >= chunkChars) await write(out.take());
    if (performance.now() - turnStarted < budgetMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    turnStarted = performance.now();
  };
  for (const family of families) {
    if (wanted && !wanted.has(family.name)) continue;
    if (!first) out.separator();
    first = false;
    out.header(family);
    const part = family.begin(context);
    for (let i = 0; i < part.rows; i++) {
      part.write(i, out);
      if ((i & 31) === 31) await pause();
    }
    await pause();
  }
  if (out.length > 0) await write(out.take());
}

/** The whole exposition as one string (tests, small registries). */
export async function scrapeToText<C>(families: ReadonlyArray<MetricFamily<C>>, context: C, options: ScrapeOptions = {}): Promise<string> {
  const parts: string[] = [];
  await scrapeInTurns(families, context, (chunk) => void parts.push(chunk), options);
  return parts.join('');
}
