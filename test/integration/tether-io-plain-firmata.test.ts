import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import five from 'johnny-five';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { TetherIO } from '../../host/tether-io/tether-io.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import type { StateChange } from '../../host/session/device-session.ts';
import { waitFor } from '../support/wait-for.ts';

// A board that speaks only Firmata (our firmware built without the keepalive extension,
// standing in for StandardFirmata) still works through TetherIO, with Firmata-query liveness.

const BUILD = fileURLToPath(new URL('../../firmware/avr/build.sh', import.meta.url));

describe('TetherIO with a plain Firmata board', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-plain-'));
  const logger = new RecordingLogger();
  let board: BoardOnPty;
  let io: TetherIO;
  const states: StateChange[] = [];

  beforeAll(async () => {
    const hexPath = join(dir, 'plain.hex');
    execFileSync('bash', [BUILD, '--plain-firmata', hexPath], { stdio: 'ignore' });
    board = await BoardOnPty.start({ hexPath, ptyPath: join(dir, 'uno') });
    io = new TetherIO({ port: join(dir, 'uno'), logger, session: { pingIntervalMs: 200, misses: 3, helloAttempts: 2 } });
    io.on('state', (c: StateChange) => states.push(c));
    const j5 = new five.Board({ io, repl: false, debug: false, timeout: 20_000 });
    await new Promise<void>((resolve) => j5.on('ready', () => resolve()));
  }, 60_000);

  afterAll(async () => {
    await io?.close();
    await board?.close();
  });

  it('is ready with liveness from Firmata version queries, and the log says so', async () => {
    await waitFor(() => io.link.state === 'ready', { timeoutMs: 5000, what: 'the plain Firmata board to be ready' });
    expect(io.link.session.protocol).toBe('firmata');
    expect(io.link.state).toBe('ready');
    expect(logger.records.some((r) => r.level === 'warn' && /plain Firmata/.test(r.msg ?? ''))).toBe(true);
  });

  it('a hung plain board is lost, and ready again when it answers', async () => {
    board.uno.freeze();
    const lost = await new Promise<StateChange>((resolve) => io.once('lost', resolve));
    expect(lost.cause).toMatch(/^no Firmata answer for \d+ ms/);
    board.uno.thaw();
    await new Promise<void>((resolve) => io.once('ready', () => resolve()));
    expect(io.link.state).toBe('ready');
  });
});
