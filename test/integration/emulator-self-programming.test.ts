import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { EmulatedUno } from '../../emulator/avr/emulated-uno.ts';
import { compileAvrProgram } from '../support/avr-gcc.ts';

describe('emulator SPM (flash self-programming)', () => {
  it('a program that fills, erases and writes a page reads the new bytes back', () => {
    const hex = compileAvrProgram(fileURLToPath(new URL('../fixtures/avr/self-program.c', import.meta.url)));
    const uno = new EmulatedUno({ firmwareHex: hex });
    const out: number[] = [];
    uno.on('data', (b) => out.push(...b));
    uno.advance(50);
    expect(out).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 127, 0xff]);
    expect(uno.stats.flashPagesWritten).toBe(1);
    expect([...uno.flash.subarray(0x7000, 0x7004)]).toEqual([0, 1, 2, 3]);
  });
});
