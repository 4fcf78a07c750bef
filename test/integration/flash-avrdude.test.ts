import { describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { loadIntelHex } from '../../host/flash/intel-hex.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';

// The emulated Optiboot is a real STK500v1 target: Debian's avrdude (the tool the Arduino
// IDE uses) writes and verifies tether.hex through it, with the pty auto-reset standing in
// for DTR. Proves the emulator, not just our programmer, speaks the protocol.

const OPTIBOOT = fileURLToPath(new URL('../../firmware/bootloader/optiboot_atmega328.hex', import.meta.url));
const APP_BYTES = 0x7e00;

function avrdudeInstalled(): boolean {
  try {
    execFileSync('avrdude', ['-?'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // `avrdude -?` exits non-zero after printing its usage; only a missing binary is ENOENT.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

const haveAvrdude = avrdudeInstalled();
const inCi = process.env.CI === 'true';

describe('avrdude -c arduino against the emulated Optiboot', () => {
  if (!haveAvrdude && inCi) {
    it('needs avrdude (Debian package avrdude): it is missing on this CI machine', () => {
      throw new Error('avrdude is not installed; scripts/test-all.sh installs it');
    });
    return;
  }

  it.skipIf(!haveAvrdude)(`writes and verifies tether.hex over the pty${haveAvrdude ? '' : ' (SKIPPED: avrdude not installed)'}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-avrdude-'));
    const blank = join(dir, 'blank.hex');
    writeFileSync(blank, ':00000001FF\n'); // an erased chip: Optiboot alone
    const board = await BoardOnPty.start({ hexPath: blank, bootloaderPath: OPTIBOOT, ptyPath: join(dir, 'uno') });
    try {
      const args = ['-c', 'arduino', '-p', 'm328p', '-P', board.bridge.linkPath, '-b', '115200', '-U', `flash:w:${FIRMWARE_HEX_PATH}:i`];
      const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
        const child = spawn('avrdude', args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        child.stdout.on('data', (d: Buffer) => (output += d.toString()));
        child.stderr.on('data', (d: Buffer) => (output += d.toString()));
        child.on('exit', (code) => resolve({ code, output }));
      });
      expect(result.code, result.output).toBe(0);
      expect(result.output).toMatch(/7\d{3} bytes of flash verified/);
      expect(board.autoResets).toBe(1);

      const expected = new Uint8Array(APP_BYTES).fill(0xff);
      loadIntelHex(readFileSync(FIRMWARE_HEX_PATH, 'utf8'), expected);
      expect(board.uno.flash.subarray(0, APP_BYTES)).toEqual(expected);
    } finally {
      await board.close();
    }
  });
});
