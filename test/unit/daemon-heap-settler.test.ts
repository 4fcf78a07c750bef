import { describe, expect, it } from 'vitest';
import { HeapSettler, SETTLED_HEAP_GROWING_PERCENT } from '../../cli/daemon-heap-settler.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';

const ON = '--optimize-for-size';
const OFF = '--no-optimize-for-size';
const TIGHT = `--heap-growing-percent=${SETTLED_HEAP_GROWING_PERCENT}`;

function setup(options: { execArgv?: string[]; nodeOptions?: string } = {}) {
  const clock = new ManualClock(0);
  const flags: Array<[number, string]> = [];
  const logger = new RecordingLogger();
  let committed = 500;
  const settler = new HeapSettler({
    clock,
    logger,
    setFlags: (f) => {
      flags.push([clock.now(), f]);
      if (f === OFF) committed = 400; // what the memory reducer did meanwhile
    },
    heapSize: () => ({ committed: committed * 1048576, used: 350 * 1048576 }),
    execArgv: options.execArgv ?? [],
    nodeOptions: options.nodeOptions ?? '',
    quietMs: 10_000,
    reduceMs: 10_000,
    minSessions: 100,
  });
  /** `n` sessions up, one every `everyMs`. */
  const sessions = (n: number, everyMs = 10) => {
    for (let i = 0; i < n; i++) {
      settler.sessionUp();
      clock.advance(everyMs);
    }
  };
  return { clock, flags, logger, settler, sessions };
}

describe('HeapSettler (the start-up memory handed back)', () => {
  it('after a burst of board sessions and 10 s without one: memory-saving mode on, off again 10 s later, then the tighter growing factor; one timer, none left', () => {
    const { clock, flags, logger, settler, sessions } = setup();
    sessions(150); // 1.5 s of starts
    const lastUp = clock.now() - 10;
    expect(clock.pending).toBe(1);
    clock.advance(10_000 - 20);
    expect(flags).toEqual([]); // not yet 10 s since the last one
    clock.advance(10);
    expect(flags).toEqual([[lastUp + 10_000, ON]]);
    clock.advance(10_000);
    expect(flags).toEqual([
      [lastUp + 10_000, ON],
      [lastUp + 20_000, OFF],
      [lastUp + 20_000, TIGHT],
    ]);
    expect(settler.settles).toBe(1);
    expect(logger.records.find((r) => r.level === 'info')?.msg).toBe('start-up memory handed back: V8 heap 500 -> 400 MiB');
    expect(clock.pending).toBe(0);
  });

  it('waits while sessions keep coming (a start that takes a minute), and settles once after the last', () => {
    const { clock, flags, sessions } = setup();
    sessions(150, 400); // 150 over a minute: never 10 s quiet
    expect(flags).toEqual([]);
    clock.advance(10_000);
    expect(flags.map(([, f]) => f)).toEqual([ON]);
    clock.advance(10_000);
    expect(flags.map(([, f]) => f)).toEqual([ON, OFF, TIGHT]);
  });

  it('leaves a small burst alone (a few boards, one board reconnecting)', () => {
    const { clock, flags, sessions } = setup();
    sessions(99);
    clock.advance(60_000);
    expect(flags).toEqual([]);
    expect(clock.pending).toBe(0);
  });

  it('settles again after a later burst (a broker restart: every session reconnects); sessions up while it reduces start the next burst', () => {
    const { clock, flags, settler, sessions } = setup();
    sessions(200);
    clock.advance(10_000); // ON
    sessions(120); // during the reduce window
    clock.advance(10_000); // OFF + TIGHT, then the next burst's quiet wait
    expect(flags.map(([, f]) => f)).toEqual([ON, OFF, TIGHT]);
    clock.advance(10_000);
    expect(flags.map(([, f]) => f)).toEqual([ON, OFF, TIGHT, ON]);
    clock.advance(10_000);
    expect(settler.settles).toBe(2);
    sessions(500);
    clock.advance(20_000);
    expect(settler.settles).toBe(3);
  });

  it("leaves the operator's choices alone: no switching with --optimize-for-size given, no growing factor when one was given", () => {
    const saver = setup({ execArgv: ['--optimize-for-size'] });
    saver.sessions(500);
    saver.clock.advance(60_000);
    expect(saver.flags).toEqual([]);
    const grower = setup({ nodeOptions: '--heap_growing_percent=80' });
    grower.sessions(500);
    grower.clock.advance(20_000);
    expect(grower.flags.map(([, f]) => f)).toEqual([ON, OFF]);
  });

  it('stop() during the memory-saving moment switches it off and leaves no timer', () => {
    const { clock, flags, settler, sessions } = setup();
    sessions(150);
    clock.advance(10_000);
    expect(flags.map(([, f]) => f)).toEqual([ON]);
    settler.stop();
    expect(flags.map(([, f]) => f)).toEqual([ON, OFF]);
    expect(clock.pending).toBe(0);
    sessions(500);
    clock.advance(60_000);
    expect(flags.map(([, f]) => f)).toEqual([ON, OFF]);
  });
});
