import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Compiles a small C test program for the ATmega328P and returns its Intel HEX text. */
export function compileAvrProgram(sourcePath: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'tether-avr-'));
  const elf = join(dir, 'program.elf');
  const hex = join(dir, 'program.hex');
  execFileSync('avr-gcc', ['-mmcu=atmega328p', '-DF_CPU=16000000UL', '-Os', '-o', elf, sourcePath]);
  execFileSync('avr-objcopy', ['-O', 'ihex', elf, hex]);
  return readFileSync(hex, 'utf8');
}
