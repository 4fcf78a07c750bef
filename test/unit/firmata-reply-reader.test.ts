import { describe, expect, it } from 'vitest';
import { FirmataReplyReader } from '../../host/firmata/firmata-reply-reader.ts';

describe('FirmataReplyReader (board -> host Firmata messages)', () => {
  it('reads version reports, firmware names, pin states and input reports, split anywhere', () => {
    const stream = [
      0xf9, 2, 5,
      0xf0, 0x79, 2, 5, ...[...'StandardFirmata.ino'].flatMap((c) => [c.charCodeAt(0), 0]), 0xf7,
      0xf0, 0x6e, 9, 3, 0x48, 0x01, 0xf7, // pin 9 PWM at 200
      0x91, 0x05, 0x00,
      0xe2, 0x7f, 0x07,
      0xf0, 0x6c, 0, 1, 1, 1, 0x7f, 0xf7,
    ];
    for (const cut of [1, 2, 5, stream.length]) {
      const reader = new FirmataReplyReader();
      const out = [];
      for (let i = 0; i < stream.length; i += cut) out.push(...reader.push(stream.slice(i, i + cut)));
      expect(out).toEqual([
        { kind: 'version', major: 2, minor: 5 },
        { kind: 'firmware', major: 2, minor: 5, name: 'StandardFirmata.ino' },
        { kind: 'pin-state', pin: 9, mode: 3, state: 200 },
        { kind: 'digital', port: 1, value: 5 },
        { kind: 'analog', channel: 2, value: 1023 },
        { kind: 'sysex', id: 0x6c, data: [0, 1, 1, 1, 0x7f] },
      ]);
    }
  });

  it('drops what is not a whole valid message: stray data, messages cut short, empty sysex, host-only commands', () => {
    const reader = new FirmataReplyReader();
    expect(reader.push([0x01, 0x02, 0xf9, 0x02, 0x90, 0x01, 0xf0, 0xf7, 0xf4, 1, 1, 0xc0, 1, 0xf0, 0x79, 2])).toEqual([]);
    // ...and recovers at once.
    expect(reader.push([0xf9, 2, 5, 7, 7])).toEqual([{ kind: 'version', major: 2, minor: 5 }]);
  });
});
