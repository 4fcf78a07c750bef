import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PtyBridge } from '../../emulator/avr/pty-bridge.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { ReconnectingTransport } from '../../host/transport/reconnecting-transport.ts';
import { SerialTransport } from '../../host/transport/serial-transport.ts';
import { TransportError } from '../../host/transport/transport.ts';
import { activeResources, leakedSince } from '../support/handles.ts';
import { waitFor } from '../support/wait-for.ts';


/** The transport's next close event, or a failure after `ms` (not the 60 s test timeout). */
const nextClose = (t: SerialTransport, ms = 3000) =>
  new Promise<TransportError | null>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no close event within ${ms} ms`)), ms);
    t.once('close', (e) => {
      clearTimeout(timer);
      resolve(e);
    });
  });

const dirs: string[] = [];
const bridges: PtyBridge[] = [];
/** A "device" on a fresh pty path (not yet plugged in). */
function device(): PtyBridge {
  const dir = mkdtempSync(join(tmpdir(), 'tether-transport-'));
  dirs.push(dir);
  const bridge = new PtyBridge(join(dir, 'board'));
  bridges.push(bridge);
  return bridge;
}
afterEach(async () => {
  for (const b of bridges.splice(0)) await b.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('SerialTransport on a pty (real serialport)', () => {
  it('carries bytes both ways; close() ends with close(null) and leaves no handles', async () => {
    const baseline = activeResources();
    const board = device();
    await board.open();
    let toBoard = '';
    board.on('data', (d) => (toBoard += d.toString()));

    const t = new SerialTransport(board.linkPath);
    expect(t.description).toBe(`${board.linkPath} @ 57600 baud`);
    await t.open();
    expect(t.isOpen).toBe(true);
    let fromBoard = '';
    t.on('data', (d) => (fromBoard += d.toString()));
    board.write(Buffer.from('from-board'));
    expect(t.write(Buffer.from('to-board'))).toBe(true);
    await waitFor(() => fromBoard === 'from-board' && toBoard === 'to-board', { timeoutMs: 3000, what: 'bytes both ways' });

    const closed = nextClose(t);
    await t.close();
    expect(await closed).toBeNull();
    expect(t.isOpen).toBe(false);
    expect(t.write(Buffer.from('late'))).toBe(false);
    await board.close();
    expect(await leakedSince(baseline)).toEqual({});
  });

  it("a missing device gives 'not-found' naming the path", async () => {
    const board = device(); // never opened: the path does not exist
    const err = await new SerialTransport(board.linkPath).open().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect(err).toMatchObject({ code: 'not-found' });
    expect((err as Error).message).toContain(board.linkPath);
  });

  it("a port another client holds gives 'busy'", async () => {
    const board = device();
    await board.open();
    const first = new SerialTransport(board.linkPath);
    await first.open();
    const err = await new SerialTransport(board.linkPath).open().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'busy' });
    expect((err as Error).message).toContain(board.linkPath);
    await first.close();
  });

  it("unplugging the device (pty closed) ends the transport with close 'closed'", async () => {
    const board = device();
    await board.open();
    // serialport's own hangup detection; the presence check (1 s) only as a backstop for the race in
    // which serialport has not started waiting for input yet when the pty closes.
    const t = new SerialTransport(board.linkPath, { presenceCheckMs: 1000 });
    await t.open();
    let got = '';
    t.on('data', (d) => (got += d.toString()));
    board.write(Buffer.from('x'));
    await waitFor(() => got === 'x', { timeoutMs: 3000, what: 'data' }); // serialport is now waiting for input
    const closed = nextClose(t);
    await board.close();
    const err = await closed;
    expect(err).toBeInstanceOf(TransportError);
    expect(err!.code).toBe('closed');
    expect(err!.message).toContain(board.linkPath);
    expect(t.isOpen).toBe(false);
    await t.close(); // already closed: a no-op
  });

  it('an unplug right after open, which serialport misses, is caught by the presence check', async () => {
    const baseline = activeResources();
    const board = device();
    await board.open();
    const t = new SerialTransport(board.linkPath, { presenceCheckMs: 100 });
    await t.open();
    const closed = nextClose(t);
    await board.close(); // before serialport's first read waits: it would re-read 0 bytes forever
    const started = Date.now();
    const err = await closed;
    expect(Date.now() - started).toBeLessThan(2000);
    // Usually the presence check reports it ("device disappeared"); now and then serialport wins the race.
    expect(err).toMatchObject({ code: 'closed' });
    expect(err!.message).toContain(board.linkPath);
    expect(t.isOpen).toBe(false);
    expect(await leakedSince(baseline)).toEqual({});
  });

  it('close() while opening leaves the port closed', async () => {
    const baseline = activeResources();
    const board = device();
    await board.open();
    const t = new SerialTransport(board.linkPath);
    const opened = t.open().catch((e: TransportError) => e.code);
    await t.close();
    expect(await opened).toBe('closed');
    expect(t.isOpen).toBe(false);
    // The port is free again: another client can take it.
    const again = new SerialTransport(board.linkPath);
    await again.open();
    await again.close();
    await board.close();
    expect(await leakedSince(baseline)).toEqual({});
  });
});

describe('ReconnectingTransport over SerialTransport (real pty, real time)', () => {
  it('reconnects after the device comes back on the same path; data flows again; stop() leaves nothing', async () => {
    const baseline = activeResources();
    const board = device();
    await board.open();
    let toBoard = '';
    board.on('data', (d) => (toBoard += d.toString()));
    const logger = new RecordingLogger();
    const rt = new ReconnectingTransport(() => new SerialTransport(board.linkPath), {
      backoff: { initialMs: 20, maxMs: 100 },
      logger,
    });
    const events: string[] = [];
    let fromBoard = '';
    rt.on('up', () => events.push('up'));
    rt.on('down', (e) => events.push(`down:${e.code}`));
    rt.on('data', (d) => (fromBoard += d.toString()));

    rt.start();
    await waitFor(() => rt.isUp, { timeoutMs: 3000, what: 'first up' });
    board.write(Buffer.from('one'));
    await waitFor(() => fromBoard === 'one', { timeoutMs: 3000, what: 'data before unplug' });

    await board.close(); // unplug
    await waitFor(() => events.includes('down:closed'), { timeoutMs: 3000, what: 'down' });
    expect(rt.write(Buffer.from('lost'))).toBe(false);
    await waitFor(() => logger.records.filter((r) => r.level === 'warn').length >= 3, { timeoutMs: 3000, what: 'retries' });
    // While unplugged, each try fails because the device path is gone.
    expect(logger.records.filter((r) => r.level === 'warn').slice(1).every((r) => (r.obj as { code: string }).code === 'not-found')).toBe(
      true,
    );

    await board.open(); // replug on the same path
    await waitFor(() => rt.isUp, { timeoutMs: 3000, what: 'up again' });
    expect(events).toEqual(['up', 'down:closed', 'up']);
    board.write(Buffer.from('two'));
    expect(rt.write(Buffer.from('hello again'))).toBe(true);
    await waitFor(() => fromBoard === 'onetwo' && toBoard === 'hello again', { timeoutMs: 3000, what: 'data after replug' });

    await rt.stop();
    await board.close();
    expect(await leakedSince(baseline)).toEqual({});
  });
});
