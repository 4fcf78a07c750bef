import { Counter, Gauge, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { formatValue, labelPair, type MetricFamily } from '../../host/metrics/metric-family.ts';
import { scrapeInTurns, scrapeToText } from '../../host/metrics/scrape-in-turns.ts';

type Board = { id: string; up: number; drops: number };
const boardsOf = (n: number): Board[] => Array.from({ length: n }, (_, i) => ({ id: `b${i}`, up: i % 2, drops: i }));

/** Families over a list of boards, as tether-metrics.ts builds them (a row per board). */
function families(): Array<MetricFamily<Board[]>> {
  return [
    {
      name: 'x_up',
      help: 'up',
      type: 'gauge',
      begin: (boards) => ({ rows: boards.length, write: (i, out) => out.sample('x_up', labelPair('device', boards[i]!.id), boards[i]!.up) }),
    },
    {
      name: 'x_drops_total',
      help: 'drops, by cause\nand "more" \\ less',
      type: 'counter',
      begin: (boards) => ({
        rows: boards.length,
        write: (i, out) => out.sample('x_drops_total', `${labelPair('device', boards[i]!.id)},${labelPair('cause', 'half-open')}`, boards[i]!.drops),
      }),
    },
    { name: 'x_collected', help: 'collected', type: 'gauge', begin: () => ({ rows: 1, write: (_i, out) => out.sample('x_collected', '', 42) }) },
  ];
}

/** The same metrics in prom-client: the reference for the text format. */
function reference(boards: Board[]): Registry {
  const registry = new Registry();
  const up = new Gauge({ name: 'x_up', help: 'up', labelNames: ['device'], registers: [registry] });
  const drops = new Counter({ name: 'x_drops_total', help: 'drops, by cause\nand "more" \\ less', labelNames: ['device', 'cause'], registers: [registry] });
  new Gauge({ name: 'x_collected', help: 'collected', registers: [registry] }).set(42);
  for (const b of boards) {
    up.set({ device: b.id }, b.up);
    drops.inc({ device: b.id, cause: 'half-open' }, b.drops);
  }
  return registry;
}

describe('scrapeInTurns', () => {
  it("writes what prom-client writes for the same metrics (Prometheus text format 0.0.4)", async () => {
    const boards = [...boardsOf(50), { id: 'odd "one" \\ with\nnewline', up: 1, drops: 2 }];
    expect(await scrapeToText(families(), boards)).toBe(await reference(boards).metrics());
  });

  it('lets the event loop run whenever a turn has taken its budget (prom-client took seconds per metric at 9,900 boards)', async () => {
    let turns = 0;
    let running = true;
    const tick = () => {
      turns++;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    // Budget 0: a turn after every 32 rows and after each family.
    await scrapeToText(families(), boardsOf(320), { budgetMs: 0 });
    running = false;
    expect(turns).toBeGreaterThanOrEqual(10 + 10 + 3 - 1);
    // A generous budget: the small scrape runs in one turn.
    turns = 0;
    running = true;
    setImmediate(tick);
    await scrapeToText(families(), boardsOf(320), { budgetMs: 60_000 });
    running = false;
    expect(turns).toBe(0);
  });

  it('hands the text over in chunks, waits for a write that returns a promise, and stops at a write that throws', async () => {
    const boards = boardsOf(200);
    const whole = await scrapeToText(families(), boards);
    const chunks: string[] = [];
    let pending = 0;
    await scrapeInTurns(families(), boards, async (chunk) => {
      expect(pending).toBe(0); // never two writes at once
      pending++;
      await new Promise((r) => setImmediate(r));
      chunks.push(chunk);
      pending--;
    }, { chunkChars: 500 });
    expect(chunks.length).toBeGreaterThan(5);
    expect(chunks.join('')).toBe(whole);

    let writes = 0;
    const failing = scrapeInTurns(families(), boards, () => {
      writes++;
      throw new Error('the scraper went away');
    }, { chunkChars: 500 });
    await expect(failing).rejects.toThrow(/the scraper went away/);
    expect(writes).toBe(1);
  });

  it('keeps only the families named, in their order; unknown names give nothing', async () => {
    const boards = boardsOf(3);
    const text = await scrapeToText(families(), boards, { names: ['x_collected', 'x_up', 'no_such_metric'] });
    const registry = reference(boards);
    expect(text).toBe(`${await registry.getSingleMetricAsString('x_up')}\n\n${await registry.getSingleMetricAsString('x_collected')}\n`);
    expect(await scrapeToText(families(), boards, { names: ['no_such_metric'] })).toBe('');
  });

  it('spells non-finite values as Prometheus does', () => {
    expect([Number.NaN, Infinity, -Infinity, 0.25, 3].map(formatValue)).toEqual(['NaN', '+Inf', '-Inf', '0.25', '3']);
  });
});
