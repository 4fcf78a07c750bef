import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// The package as a user imports it: the built library (npm ci builds it), not the sources.
import { connect } from 'tether';
import { BoardOnPty } from 'tether/emulator';

describe('the tether library entry point', () => {
  it('connect() resolves with a ready link to a board; state registers round-trip; close() ends it', async () => {
    const ptyPath = join(mkdtempSync(join(tmpdir(), 'tether-lib-')), 'uno');
    const board = await BoardOnPty.start({ hexPath: join(process.cwd(), 'firmware/avr/tether.hex'), ptyPath });
    try {
      const link = await connect(ptyPath, { session: { pingIntervalMs: 200 } });
      expect(link.state).toBe('ready');
      await link.writeState(0, Uint8Array.from([42, 43]));
      expect([...(await link.readState(0, 2))]).toEqual([42, 43]);
      expect(link.stats().rttMs.last).toBeGreaterThan(0);
      await link.close();
      expect(link.state).toBe('disconnected');
    } finally {
      await board.close();
    }
  });

  it('connect() rejects with a clear error when the board never answers', async () => {
    await expect(connect('/dev/tether-no-such-port', { readyTimeoutMs: 500 })).rejects.toThrow(/not ready within 500 ms/);
  });
});
