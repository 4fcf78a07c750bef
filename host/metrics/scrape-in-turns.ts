import type { Registry } from 'prom-client';

/**
 * The registry's text exposition, the same as `registry.metrics()` (Prometheus text format), but
 * one metric per event-loop turn: prom-client formats every metric in one go, which blocked the
 * daemon for 10 s at 9,900 boards (every board's keepalive late). `names` keeps only those.
 */
export async function scrapeInTurns(registry: Registry, names: readonly string[] = []): Promise<string> {
  const wanted = names.length === 0 ? null : new Set(names);
  const parts: string[] = [];
  for (const metric of registry.getMetricsAsArray()) {
    const { name } = metric as unknown as { name: string };
    if (wanted && !wanted.has(name)) continue;
    parts.push(await registry.getSingleMetricAsString(name));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return parts.length === 0 ? '' : `${parts.join('\n\n')}\n`;
}
