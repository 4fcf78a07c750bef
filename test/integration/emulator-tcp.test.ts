import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { BoardOnTcp, PORT_IN_USE_MESSAGE } from '../../emulator/avr/board-on-tcp.ts';
import { connect } from '../../host/index.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { fileURLToPath } from 'node:url';

const OPTIBOOT = fileURLToPath(new URL('../../firmware/bootloader/optiboot_atmega328.hex', import.meta.url));
import { activeResources, leakedSince } from '../support/handles.ts';
import { waitFor } from '../support/wait-for.ts';

/** A raw TCP client: what it received, and when it was closed. */
function rawClient(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, connected, closed, received: () => received };
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('emulated board served over TCP (as ser2net serves a real one; no pty, no socat)', () => {
  it('a host link gets ready through it; a second client is refused as ser2net does; disconnect and reconnect work; close() leaves no handles', async () => {
    const baseline = activeResources();
    const board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    expect(board.url).toBe(`tcp://127.0.0.1:${board.port}`);
    expect(board.port).toBeGreaterThan(0);

    // The host side, as the daemon uses it: tcp://host:port.
    const t0 = performance.now();
    const link = await connect(board.url, { session: { pingIntervalMs: 200 } });
    console.log(`emulator-tcp: ready ${Math.round(performance.now() - t0)} ms after connect()`);
    expect(link.state).toBe('ready');
    expect(board.clientConnected).toBe(true);
    await link.writeState(0, Uint8Array.from([7, 8, 9]));
    expect([...(await link.readState(0, 3))]).toEqual([7, 8, 9]);

    // A second client, while the link holds the port: told and closed; the first keeps it.
    const refusedEvent = new Promise<string>((resolve) => board.once('refused', (_remote, reason) => resolve(reason)));
    const second = rawClient(board.port);
    await within(second.closed, 2000, 'the second client closed');
    expect(second.received()).toBe(PORT_IN_USE_MESSAGE);
    expect(await refusedEvent).toBe('port in use');
    const pongsBefore = link.stats().pongs;
    await link.readState(0, 1); // still answered: the first client was not disturbed
    expect(link.state).toBe('ready');
    expect(board.connections).toBe(1);
    const bootId = link.stats().bootId!;

    // The bridge cuts the connection: the link reconnects by itself and is ready again.
    const readyAgain = link.nextState('ready', 10_000);
    board.dropClient();
    await readyAgain;
    expect(board.connections).toBe(2);
    // Answered again on the new connection. Not at `ready` itself: HELLO makes it ready, and the
    // first PONG after it (its BEATS request's) may come a moment later (failed once in CI).
    await waitFor(() => link.stats().pongs > pongsBefore, { timeoutMs: 5000, what: 'a PONG on the new connection', detail: () => `pongs ${link.stats().pongs}, before ${pongsBefore}` });
    expect(link.stats().bootId).toBe(bootId); // the board kept running: no reset
    expect([...(await link.readState(0, 3))]).toEqual([7, 8, 9]);

    // The client goes away on purpose, then a new one connects: the port is free again.
    const disconnected = new Promise<void>((resolve) => board.once('disconnect', () => resolve()));
    await link.close();
    await within(disconnected, 2000, 'disconnect seen by the board');
    expect(board.clientConnected).toBe(false);
    const again = await connect(board.url, { session: { pingIntervalMs: 200 } });
    expect(again.state).toBe('ready');
    expect([...(await again.readState(0, 3))]).toEqual([7, 8, 9]);
    await again.close();

    // Unplugged behind the bridge: clients are closed at once; plugged back: served again.
    await board.unplug();
    const whileUnplugged = rawClient(board.port);
    await within(whileUnplugged.closed, 2000, 'a client of an unplugged board closed');
    expect(whileUnplugged.received()).toBe('');
    await board.replug();
    const afterReplug = await connect(board.url, { session: { pingIntervalMs: 200 } });
    expect(afterReplug.stats().bootId).toBe(bootId + 1); // powered up again
    expect(board.uno.stats.resets['power-on']).toBe(2);
    await afterReplug.close();

    await board.close();
    expect(await leakedSince(baseline)).toEqual({});
  });

  it('close() with a client still connected ends it and leaves no handles', async () => {
    const baseline = activeResources();
    const board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    const client = rawClient(board.port);
    await client.connected;
    await board.close();
    await within(client.closed, 2000, 'the client closed by close()');
    expect(await leakedSince(baseline)).toEqual({});
  });

  it('with a bootloader, each new connection is a fresh open: its first GET_SYNC resets into Optiboot, retries on the same connection do not', async () => {
    const board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH, bootloaderPath: OPTIBOOT });
    try {
      /** Sends GET_SYNC every 100 ms until Optiboot answers INSYNC OK (14 10), as a programmer does. */
      const sync = async () => {
        const client = rawClient(board.port);
        await client.connected;
        await waitFor(
          () => {
            if (client.received().includes('\x14\x10')) return true;
            client.socket.write(Buffer.from([0x30, 0x20]));
            return false;
          },
          { timeoutMs: 3000, intervalMs: 100, what: 'INSYNC OK from Optiboot', detail: () => `got ${JSON.stringify(client.received())}` },
        );
        client.socket.destroy();
        await client.closed;
      };
      await sync();
      expect(board.autoResets).toBe(1);
      // A second programmer right after the first (well within 1 s of its last byte).
      await sync();
      expect(board.autoResets).toBe(2);
      expect(board.uno.stats.resets.external).toBe(2);
    } finally {
      await board.close();
    }
  });

  it('reports a clear error when the firmware image is missing, and listens on nothing', async () => {
    const baseline = activeResources();
    await expect(BoardOnTcp.start({ hexPath: '/nonexistent/tether.hex' })).rejects.toThrow('firmware image not found: /nonexistent/tether.hex');
    expect(await leakedSince(baseline)).toEqual({});
  });
});
