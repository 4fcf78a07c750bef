import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { FirmwareHarness, firmata } from '../support/firmware-harness.ts';
import { buildPlainFirmata } from '../support/plain-firmata.ts';

// The plain-Firmata build stands in for a Uno running StandardFirmata in the host's tests, so
// it must do at boot what StandardFirmata does: blink its version on pin 13 (about 2 s, serial
// not read meanwhile), announce REPORT_VERSION and the firmware name unasked, then make every
// digital pin a LOW output, forgetting what was set before any reset.

let firmwareHex = '';
beforeAll(() => {
  firmwareHex = readFileSync(buildPlainFirmata(), 'utf8');
}, 60_000);

const NAME = [...'plain-firmata'].flatMap((c) => [c.charCodeAt(0), 0]);
const ANNOUNCEMENT = [0xf9, 2, 5, 0xf0, 0x79, 2, 5, ...NAME, 0xf7];

describe('the plain-Firmata build at boot, as StandardFirmata', () => {
  it('blinks pin 13 for about 2 s without answering, then announces itself unasked, then answers what waited', () => {
    const board = new FirmwareHarness({ firmwareHex });
    const blinks: number[] = [];
    board.uno.on('pin', (pin, high) => {
      if (pin === 13 && high) blinks.push(board.uno.stats.uptimeMs);
    });
    board.uno.advance(100);
    board.sendRaw([0xf9]); // a version query during the blink waits in the RX buffer
    board.uno.advance(1800);
    expect(board.firmata).toEqual([]);
    board.runUntil(() => board.firmata.length >= ANNOUNCEMENT.length + 3, 500);
    expect(board.firmata).toEqual([...ANNOUNCEMENT, 0xf9, 2, 5]);
    expect(blinks).toHaveLength(2 + 5); // its version, 2.5
    expect(board.uno.stats.uptimeMs).toBeGreaterThan(1990);
    for (let pin = 2; pin <= 13; pin++) expect(board.uno.digitalOutput(pin)).toBe(false);
    expect(board.messages).toEqual([]);
  });

  it('ignores keepalive frames and forgets its pins on a reset', () => {
    const board = new FirmwareHarness({ firmwareHex });
    board.runUntil(() => board.firmata.length >= ANNOUNCEMENT.length, 3000);
    board.sendRaw([...firmata.setPinMode(13, firmata.MODE.OUTPUT), ...firmata.setDigitalPin(13, 1), ...firmata.setPinMode(2, firmata.MODE.INPUT)]);
    board.runUntil(() => board.uno.digitalOutput(13) === true && board.uno.digitalOutput(2) === null, 100);
    board.send({ type: 'hello-request' });
    board.send({ type: 'ping', seq: 1, leaseMs: 0 });
    board.uno.advance(100);
    expect(board.messages).toEqual([]);

    board.firmata = [];
    board.uno.reset();
    board.runUntil(() => board.firmata.length >= ANNOUNCEMENT.length, 3000);
    expect(board.firmata).toEqual(ANNOUNCEMENT);
    expect(board.uno.digitalOutput(13)).toBe(false);
    expect(board.uno.digitalOutput(2)).toBe(false);
    board.firmata = [];
    board.sendRaw(firmata.pinStateQuery(2));
    board.runUntil(() => board.firmata.at(-1) === 0xf7, 100);
    expect(board.firmata).toEqual([0xf0, 0x6e, 2, firmata.MODE.OUTPUT, 0, 0xf7]);
  });
});
