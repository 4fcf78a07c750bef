import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FirmataCommandTracker } from '../../host/firmata/firmata-command-tracker.ts';
import { registerRuns, replayCommands } from '../../host/firmata/replay.ts';
import { isPinRecordEmpty } from '../../host/firmata/pin-record.ts';

describe('FirmataCommandTracker', () => {
  it('records modes, port and pin writes, PWM, reporting and the sampling interval', () => {
    const t = new FirmataCommandTracker();
    t.observe([0xf4, 13, 1, 0x91, 0x20, 0x00]); // pin 13 OUTPUT; port 1 = 0x20 (pin 13 high)
    t.observe([0xf5, 2, 1]); // pin 2 high (port 0)
    t.observe([0xf4, 3, 3, 0xe3, 0x7f, 0x01]); // pin 3 PWM 255
    t.observe([0xf0, 0x6f, 9, 0x10, 0x02, 0xf7]); // extended analog pin 9 = 272
    t.observe([0xc0, 1, 0xd0, 1, 0xf0, 0x7a, 50, 0, 0xf7]);
    t.observe([0xc1, 1, 0xc1, 0]); // channel 1 on then off
    expect(t.record.modes).toEqual(new Map([[13, 1], [3, 3]]));
    expect(t.record.digitalPorts).toEqual(new Map([[1, 0x20], [0, 0x04]]));
    expect(t.record.analogWrites).toEqual(new Map([[3, 255], [9, 272]]));
    expect([...t.record.analogReporting]).toEqual([0]);
    expect([...t.record.digitalReporting]).toEqual([0]);
    expect(t.record.samplingIntervalMs).toBe(50);
  });

  it('forgets the pins (not the registers) on SYSTEM_RESET', () => {
    const t = new FirmataCommandTracker();
    t.record.registers.set(0, 7);
    t.observe([0xf4, 13, 1, 0x91, 0x20, 0x00, 0xff]);
    expect(isPinRecordEmpty(t.record)).toBe(true);
    expect(t.record.registers.get(0)).toBe(7);
  });

  it('ignores queries, stray data bytes and broken sysex, and resyncs on the next command', () => {
    const t = new FirmataCommandTracker();
    t.observe([0x00, 0x05, 0xf0, 0x6b, 0xf7, 0xf9, 0xf0, 0x79, 0xf7, 0xf0, 0x7a, 0x05]); // sysex cut short...
    t.observe([0xf4, 13, 1]); // ...by this command
    expect(t.record.modes).toEqual(new Map([[13, 1]]));
    expect(t.record.samplingIntervalMs).toBe(null);
  });

  it('replaying a record into a fresh tracker reproduces it (any command sequence)', () => {
    const command = fc.oneof(
      fc.tuple(fc.constant(0xf4), fc.integer({ min: 0, max: 19 }), fc.constantFrom(0, 1, 2, 3, 0x0b)),
      fc.tuple(fc.integer({ min: 0x90, max: 0x92 }), fc.integer({ min: 0, max: 127 }), fc.integer({ min: 0, max: 1 })),
      fc.tuple(fc.constant(0xf5), fc.integer({ min: 0, max: 19 }), fc.integer({ min: 0, max: 1 })),
      fc.tuple(fc.integer({ min: 0xe0, max: 0xef }), fc.integer({ min: 0, max: 127 }), fc.integer({ min: 0, max: 127 })),
      fc.tuple(fc.integer({ min: 0xc0, max: 0xc5 }), fc.integer({ min: 0, max: 1 })),
      fc.tuple(fc.integer({ min: 0xd0, max: 0xd2 }), fc.integer({ min: 0, max: 1 })),
      fc.tuple(fc.constant(0xf0), fc.constant(0x7a), fc.integer({ min: 0, max: 127 }), fc.integer({ min: 0, max: 127 }), fc.constant(0xf7)),
    );
    fc.assert(
      fc.property(fc.array(command, { maxLength: 60 }), (commands) => {
        const original = new FirmataCommandTracker();
        original.observe(commands.flat());
        const replayed = new FirmataCommandTracker();
        replayed.observe(replayCommands(original.record));
        expect(replayed.record).toEqual(original.record);
      }),
    );
  });
});

describe('registerRuns', () => {
  it('groups contiguous registers into chunks of at most 16', () => {
    const regs = new Map<number, number>();
    for (let i = 0; i < 20; i++) regs.set(i, i);
    regs.set(25, 99);
    const runs = registerRuns(regs);
    expect(runs.map(([o, b]) => [o, b.length])).toEqual([[0, 16], [16, 4], [25, 1]]);
    expect([...runs[2]![1]]).toEqual([99]);
  });
});
