/** Active handles and timers by kind, e.g. { Timeout: 1, PipeWrap: 3 }. */
export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

/** Waits (up to `ms`) until no more resources are active than in `baseline`; returns the leftovers. */
export async function leakedSince(baseline: Record<string, number>, ms = 2000): Promise<Record<string, number>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const now = activeResources();
    const leaked: Record<string, number> = {};
    for (const [kind, count] of Object.entries(now)) {
      const extra = count - (baseline[kind] ?? 0);
      if (extra > 0) leaked[kind] = extra;
    }
    if (Object.keys(leaked).length === 0 || Date.now() > deadline) return leaked;
    await new Promise((r) => setTimeout(r, 50));
  }
}
