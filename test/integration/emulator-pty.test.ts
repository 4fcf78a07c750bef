import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { BoardOnPty } from '../../emulator/avr/board-on-pty.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import { encodeFrame, KeepaliveFrameParser } from '../../shared/protocol/index.ts';
import type { DeviceMessage } from '../../shared/protocol/messages.ts';
import { activeResources, leakedSince } from '../support/handles.ts';
import { waitFor } from '../support/wait-for.ts';

async function openClient(path: string) {
  const port = new SerialPort({ path, baudRate: 57600, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  const messages: DeviceMessage[] = [];
  const parser = port.pipe(new KeepaliveFrameParser());
  parser.on('data', (event: { kind: string; message?: DeviceMessage }) => {
    if (event.kind === 'message') messages.push(event.message!);
  });
  /** Takes the first message of `type` received (waiting for it if none yet). */
  const take = async <T extends DeviceMessage['type']>(type: T, timeoutMs = 5000): Promise<Extract<DeviceMessage, { type: T }>> => {
    const found = await waitFor(() => messages.find((m) => m.type === type), { timeoutMs, what: `a ${type} from the board` });
    messages.splice(messages.indexOf(found), 1);
    return found as Extract<DeviceMessage, { type: T }>;
  };
  const close = () => new Promise<void>((resolve) => port.close(() => resolve()));
  return { port, take, close };
}

describe('emulated board on a pty (real time, real serialport)', () => {
  it('serves the firmware on a pty, survives unplug/replug, and leaves no handles behind', async () => {
    const baseline = activeResources();
    const ptyPath = join(mkdtempSync(join(tmpdir(), 'tether-pty-')), 'uno');
    const board = await BoardOnPty.start({ hexPath: FIRMWARE_HEX_PATH, ptyPath });
    expect(existsSync(ptyPath)).toBe(true);

    const client = await openClient(ptyPath);
    client.port.write(encodeFrame({ type: 'hello-request' }));
    const hello = await client.take('hello');
    client.port.write(encodeFrame({ type: 'ping', seq: 42, leaseMs: 1000 }));
    const pong = await client.take('pong');
    expect(pong).toMatchObject({ type: 'pong', seq: 42, leaseActive: true });
    await client.close();

    await board.unplug();
    expect(existsSync(ptyPath)).toBe(false);
    await board.replug();
    expect(existsSync(ptyPath)).toBe(true);
    const again = await openClient(ptyPath);
    again.port.write(encodeFrame({ type: 'hello-request' }));
    const after = await again.take('hello');
    expect(after.bootId).toBe(hello.bootId + 1);
    expect(after.resetCauses).toEqual(['power-on']);
    await again.close();

    await board.close();
    expect(await leakedSince(baseline)).toEqual({});
  });

  it('reports a clear error when the firmware image is missing', async () => {
    await expect(BoardOnPty.start({ hexPath: '/nonexistent/tether.hex', ptyPath: join(tmpdir(), 'never') })).rejects.toThrow(
      'firmware image not found: /nonexistent/tether.hex',
    );
  });
});
