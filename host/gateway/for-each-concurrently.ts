/**
 * Runs `fn` on every item, at most `limit` at once, in order of the items. After the first
 * failure no further item is started; it resolves, once the ones started have settled, with that
 * failure (or null when every item succeeded). Nothing is rejected, so the caller decides how to
 * undo what succeeded.
 */
export async function forEachConcurrently<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<{ err: unknown } | null> {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be an integer >= 1, got ${String(limit)}`);
  let next = 0;
  let failure: { err: unknown } | null = null;
  const worker = async () => {
    while (failure === null && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return failure;
}
