import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { loadMallocTrim, MallocTrimmer } from '../../cli/daemon-malloc-trim.ts';

describe('MallocTrimmer', () => {
  it('trims once per period, one call at a time, and leaves no timer after stop()', async () => {
    const clock = new ManualClock(0);
    const calls: number[] = [];
    let finish: (() => void) | null = null;
    const trimmer = new MallocTrimmer({
      clock,
      logger: new RecordingLogger(),
      everyMs: 1000,
      trim: () => {
        calls.push(clock.now());
        return new Promise<boolean>((resolve) => (finish = () => resolve(true)));
      },
    });
    trimmer.start();
    await clock.advanceAsync(999);
    expect(calls).toEqual([]);
    await clock.advanceAsync(1);
    expect(calls).toEqual([1000]);
    // The call is still running: no second one, however long it takes.
    await clock.advanceAsync(5000);
    expect(calls).toEqual([1000]);
    finish!();
    await clock.advanceAsync(0);
    expect(trimmer.counts).toEqual({ calls: 1, released: 1 });
    // The next period counts from the end of the last call.
    await clock.advanceAsync(1000);
    expect(calls).toEqual([1000, 7000]);
    trimmer.stop();
    finish!();
    await clock.advanceAsync(0);
    expect(clock.pending).toBe(0);
    await clock.advanceAsync(10_000);
    expect(calls).toHaveLength(2);
  });

  it('goes on after a failed call, and says why at debug level', async () => {
    const clock = new ManualClock(0);
    const logger = new RecordingLogger();
    let n = 0;
    const trimmer = new MallocTrimmer({
      clock,
      logger,
      everyMs: 100,
      trim: async () => {
        n++;
        if (n === 1) throw new Error('no luck');
        return false;
      },
    });
    trimmer.start();
    await clock.advanceAsync(100);
    await clock.advanceAsync(100);
    expect(trimmer.counts).toEqual({ calls: 2, released: 0 });
    expect(logger.records.some((r) => r.level === 'debug' && (r.obj as { err?: string }).err === 'no luck')).toBe(true);
    trimmer.stop();
    expect(clock.pending).toBe(0);
  });

  it('refuses a period that is not > 0', () => {
    expect(() => new MallocTrimmer({ clock: new ManualClock(0), logger: new RecordingLogger(), everyMs: 0, trim: async () => true })).toThrow(RangeError);
  });
});

describe('loadMallocTrim', () => {
  // glibc has malloc_trim (this machine and CI: Debian); musl and macOS do not and get a reason.
  const glibc = process.platform === 'linux' && Boolean((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime);

  it('calls glibc malloc_trim(0) on a thread of its own, or says why it cannot', async () => {
    const loaded = loadMallocTrim();
    if (!glibc) {
      expect(loaded.trim).toBeNull();
      expect(loaded.error).toMatch(/\S/);
      return;
    }
    expect(loaded.error).toBeUndefined();
    // Free memory in the C heap to hand back: many small buffers, every other one dropped.
    const kept: Buffer[] = [];
    for (let i = 0; i < 20_000; i++) {
      const b = Buffer.allocUnsafeSlow(512);
      if (i % 2 === 0) kept.push(b);
    }
    expect(typeof (await loaded.trim!())).toBe('boolean');
    expect(kept).toHaveLength(10_000);
  });
});
