import { waitFor } from './wait-for.ts';

/** Active handles and timers by kind, e.g. { Timeout: 1, PipeWrap: 3 }. */
export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

/** Resources active beyond `baseline`, by kind. */
function leftOver(baseline: Record<string, number>): Record<string, number> {
  const leaked: Record<string, number> = {};
  for (const [kind, count] of Object.entries(activeResources())) {
    const extra = count - (baseline[kind] ?? 0);
    if (extra > 0) leaked[kind] = extra;
  }
  return leaked;
}

/** Waits (up to `ms`) until no more resources are active than in `baseline`; returns the leftovers. */
export async function leakedSince(baseline: Record<string, number>, ms = 2000): Promise<Record<string, number>> {
  try {
    await waitFor(() => Object.keys(leftOver(baseline)).length === 0, { timeoutMs: ms, intervalMs: 50, what: 'resources to be released' });
  } catch {
    // Not all released: the caller's assertion on what is left says which.
  }
  return leftOver(baseline);
}
