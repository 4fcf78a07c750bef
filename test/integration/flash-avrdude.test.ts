import { describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { connect } from '../../host/index.ts';
import { loadIntelHex } from '../../host/flash/intel-hex.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { EmulateProcess } from '../support/emulate-process.ts';

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

function avrdude(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('avrdude', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('close', (code) => resolve({ code, output })); // 'close': after the pipes are drained, not 'exit'
  });
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
      const result = await avrdude(args);
      expect(result.code, result.output).toBe(0);
      expect(result.output).toMatch(/[78]\d{3} bytes of flash verified/);
      expect(board.autoResets).toBe(1);

      const expected = new Uint8Array(APP_BYTES).fill(0xff);
      loadIntelHex(readFileSync(FIRMWARE_HEX_PATH, 'utf8'), expected);
      expect(board.uno.flash.subarray(0, APP_BYTES)).toEqual(expected);
    } finally {
      await board.close();
    }
  });

  it.skipIf(!haveAvrdude)(`writes and verifies tether.hex over TCP (-P net:) through tether emulate --tcp, no pty${haveAvrdude ? '' : ' (SKIPPED: avrdude not installed)'}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-avrdude-tcp-'));
    const blank = join(dir, 'blank.hex');
    writeFileSync(blank, ':00000001FF\n'); // an erased chip: Optiboot alone
    const emulator = await EmulateProcess.startTcp(['--hex', blank, '--bootloader', OPTIBOOT]);
    try {
      const port = emulator.tcpPort;
      const started = performance.now();
      const result = await avrdude(['-c', 'arduino', '-p', 'm328p', '-P', `net:127.0.0.1:${port}`, '-b', '115200', '-U', `flash:w:${FIRMWARE_HEX_PATH}:i`]);
      console.log(`avrdude over net: ${Math.round(performance.now() - started)} ms`);
      expect(result.code, result.output).toBe(0);
      expect(result.output).toMatch(/[78]\d{3} bytes of flash verified/);
      // One client came and went; the faked DTR reset put the MCU into Optiboot for it.
      expect(emulator.events.filter((e) => e.event === 'connect')).toHaveLength(1);
      await emulator.waitFor((e) => e.event === 'disconnect');
      expect(emulator.events.filter((e) => e.event === 'reset' && e.cause === 'external')).toHaveLength(1);

      // Optiboot then starts what it wrote: tether's firmware answers a host link on the same port.
      const link = await connect(`tcp://127.0.0.1:${port}`, { session: { pingIntervalMs: 200 } });
      expect(link.state).toBe('ready');
      await link.close();
    } finally {
      expect(await emulator.stop()).toBe(0);
    }
  });
});
