import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import type { EEPROMBackend } from 'avr8js';

/**
 * EEPROM contents that outlive the emulator process, like the chip's EEPROM outlives
 * a power cycle. Blank cells read 0xFF, as on a new ATmega328P.
 */
export class FileEeprom implements EEPROMBackend {
  readonly memory: Uint8Array;
  private dirty = false;

  constructor(readonly size = 1024, readonly path?: string) {
    this.memory = new Uint8Array(size).fill(0xff);
    if (path) {
      try {
        const saved = readFileSync(path);
        this.memory.set(saved.subarray(0, size));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }

  readMemory(addr: number): number {
    return this.memory[addr % this.size]!;
  }

  writeMemory(addr: number, value: number): void {
    // An EEPROM write can only clear bits; erase sets them.
    this.memory[addr % this.size]! &= value;
    this.dirty = true;
  }

  eraseMemory(addr: number): void {
    this.memory[addr % this.size] = 0xff;
    this.dirty = true;
  }

  /** Writes pending changes to the file (atomically, so a crash never leaves half a file). */
  flush(): void {
    if (!this.dirty || !this.path) return;
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, this.memory);
    renameSync(tmp, this.path);
    this.dirty = false;
  }
}
