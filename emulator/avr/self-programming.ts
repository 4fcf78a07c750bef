import type { CPU } from 'avr8js';
import { FLASH_PAGE_BYTES, REG } from './atmega328p.ts';

const SELFPRGEN = 0x01;
const PGERS = 0x02;
const PGWRT = 0x04;
const BLBSET = 0x08;
const RWWSRE = 0x10;
const SIGRD = 0x20;
const RWWSB = 0x40;

/** Page erase and page write each take 3.7-4.5 ms on the chip; the CPU is halted meanwhile. */
const PAGE_OPERATION_MS = 4;

/**
 * The SPM instruction that avr8js leaves as a no-op, so that a bootloader (Optiboot)
 * can write flash: temporary page buffer fill, page erase, page write, RWW re-enable.
 */
export class SelfProgramming {
  private readonly pageWords = FLASH_PAGE_BYTES / 2;
  private readonly buffer = new Uint16Array(this.pageWords).fill(0xffff);
  private armedAtCycle = -Infinity;
  pagesWritten = 0;

  constructor(
    private readonly cpu: CPU,
    private readonly clockHz: number,
  ) {
    cpu.writeHooks[REG.SPMCSR] = (value) => {
      // Only the command bits and SELFPRGEN are writable; RWWSB is read-only.
      cpu.data[REG.SPMCSR] = (cpu.data[REG.SPMCSR]! & RWWSB) | (value & ~RWWSB);
      if (value & SELFPRGEN) this.armedAtCycle = cpu.cycles;
      return true;
    };
  }

  /** Executes the SPM at PC. `increment` is the `SPM Z+` form. */
  execute(increment: boolean): void {
    const { cpu } = this;
    const spmcsr = cpu.data[REG.SPMCSR]!;
    const z = cpu.data[30]! | (cpu.data[31]! << 8);
    // SPM must follow the SPMCSR write within four cycles; otherwise it does nothing.
    const armed = spmcsr & SELFPRGEN && cpu.cycles - this.armedAtCycle <= 4;
    let busyCycles = 0;
    if (armed) {
      const command = spmcsr & (PGERS | PGWRT | BLBSET | RWWSRE | SIGRD);
      const pageStartWord = (z >> 1) & ~(this.pageWords - 1);
      if (command === 0) {
        this.buffer[(z >> 1) & (this.pageWords - 1)] = cpu.data[0]! | (cpu.data[1]! << 8);
      } else if (command === PGERS) {
        cpu.progMem.fill(0xffff, pageStartWord, pageStartWord + this.pageWords);
        busyCycles = this.pageOperationCycles();
      } else if (command === PGWRT) {
        for (let i = 0; i < this.pageWords; i++) cpu.progMem[pageStartWord + i]! &= this.buffer[i]!;
        this.buffer.fill(0xffff);
        this.pagesWritten++;
        busyCycles = this.pageOperationCycles();
      } else if (command === RWWSRE) {
        cpu.data[REG.SPMCSR]! &= ~RWWSB;
      }
      // BLBSET and SIGRD: lock bits and signature rows are not modelled; harmless no-ops.
      if (command === PGERS || command === PGWRT) cpu.data[REG.SPMCSR]! |= RWWSB;
      cpu.data[REG.SPMCSR]! &= ~(SELFPRGEN | PGERS | PGWRT | BLBSET | RWWSRE | SIGRD);
      this.armedAtCycle = -Infinity;
    }
    if (increment) {
      const next = (z + 1) & 0xffff;
      cpu.data[30] = next & 0xff;
      cpu.data[31] = next >> 8;
    }
    cpu.pc += 1;
    cpu.cycles += 1 + busyCycles;
  }

  private pageOperationCycles(): number {
    return Math.round((this.clockHz * PAGE_OPERATION_MS) / 1000);
  }
}
