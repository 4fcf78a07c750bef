import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { waitFor } from '../support/wait-for.ts';
import { DaemonHeapCompaction, watchMajorGc } from '../../cli/daemon-heap-compaction.ts';

function setup(everyMs = 1000) {
  const clock = new ManualClock(0);
  const flags: string[] = [];
  let onMajor: (() => void) | null = null;
  const compaction = new DaemonHeapCompaction({
    clock,
    logger: new RecordingLogger(),
    everyMs,
    setFlag: (flag) => flags.push(flag),
    watchMajorGc: (cb) => {
      onMajor = cb;
      return () => (onMajor = null);
    },
  });
  return { clock, flags, compaction, major: () => onMajor?.(), watching: () => onMajor !== null };
}

describe('DaemonHeapCompaction', () => {
  it('turns compaction on once a period, for the next two full collections, then off', () => {
    const { clock, flags, compaction, major, watching } = setup();
    compaction.start();
    clock.advance(999);
    expect(flags).toEqual([]);
    clock.advance(1);
    expect(flags).toEqual(['--compact-on-every-full-gc']);
    expect(watching()).toBe(true);
    // No new period while waiting for the collections, however long they take to come.
    clock.advance(10_000);
    expect(flags).toHaveLength(1);
    major();
    expect(flags).toHaveLength(1);
    major();
    expect(flags).toEqual(['--compact-on-every-full-gc', '--no-compact-on-every-full-gc']);
    expect(watching()).toBe(false);
    expect(compaction.counts).toEqual({ armed: 1, done: 1 });
    // The next period counts from then.
    clock.advance(1000);
    expect(flags).toHaveLength(3);
    compaction.stop();
    expect(flags.at(-1)).toBe('--no-compact-on-every-full-gc');
    expect(watching()).toBe(false);
    expect(clock.pending).toBe(0);
  });

  it('stop() before the period leaves the flag alone and no timer', () => {
    const { clock, flags, compaction } = setup();
    compaction.start();
    compaction.stop();
    clock.advance(5000);
    expect(flags).toEqual([]);
    expect(clock.pending).toBe(0);
  });

  it("leaves an operator's own choice of the flag alone", () => {
    expect(DaemonHeapCompaction.wanted([], '')).toBe(true);
    expect(DaemonHeapCompaction.wanted(['--compact-on-every-full-gc'], '')).toBe(false);
    expect(DaemonHeapCompaction.wanted([], '--no-compact_on_every_full_gc')).toBe(false);
  });

  it('with V8: the committed heap left by garbage in half-empty pages shrinks once the flag is on', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const majors: number[] = [];
    const unwatch = watchMajorGc(() => majors.push(1));
    // One object kept in ten: every page stays in use, mostly empty.
    const keep: object[] = [];
    let junk: object[] | null = [];
    for (let i = 0; i < 1_000_000; i++) (i % 10 === 0 ? keep : junk).push({ a: i, b: [i] });
    junk = null;
    gc();
    gc();
    const before = v8.getHeapStatistics().total_heap_size;
    v8.setFlagsFromString('--compact-on-every-full-gc');
    try {
      gc();
      gc();
    } finally {
      v8.setFlagsFromString('--no-compact-on-every-full-gc');
    }
    const after = v8.getHeapStatistics().total_heap_size;
    expect(keep).toHaveLength(100_000);
    expect(after).toBeLessThan(before * 0.7);
    // The observer hears the full collections (perf_hooks delivers gc entries after the turn).
    await waitFor(() => majors.length > 0, { what: 'a full collection reported by watchMajorGc' });
    unwatch();
  });
});
