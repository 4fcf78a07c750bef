import { afterEach, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { EspruinoBoard, type EspruinoBoardOptions } from '../../emulator/espruino/espruino-board.ts';
import { readEspruinoModule } from '../../host/espruino/module-source.ts';
import { moduleLines, uploadToEspruino, UploadError, type UploadProgress } from '../../host/espruino/upload.ts';
import type { Transport, TransportEvents } from '../../host/transport/transport.ts';
import { encodeFrame, FrameSplitter } from '../../shared/protocol/index.ts';
import type { DeviceMessage } from '../../shared/protocol/messages.ts';
import { replLineForFrame } from '../../host/espruino/espruino-repl-transport.ts';
import { waitFor } from '../support/wait-for.ts';

// The uploader against the stand-in's REPL (real time): the board evaluates what it receives in
// its vm context, says XOFF when its RX buffer fills, and save() keeps the program in flash.

const MODULE = readEspruinoModule();
const boards: EspruinoBoard[] = [];
const ports: Transport[] = [];

async function fresh(options: EspruinoBoardOptions = {}): Promise<{ board: EspruinoBoard; port: Transport }> {
  const board = new EspruinoBoard(options); // an empty board: nothing saved
  const port = board.createTransport();
  await port.open();
  boards.push(board);
  ports.push(port);
  return { board, port };
}

function framesFrom(port: Transport): DeviceMessage[] {
  const splitter = new FrameSplitter({ from: 'device' });
  const out: DeviceMessage[] = [];
  port.on('data', (bytes) => {
    for (const e of splitter.push(bytes)) if (e.kind === 'message') out.push(e.message as DeviceMessage);
  });
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterEach(async () => {
  for (const port of ports.splice(0)) await port.close();
  for (const board of boards.splice(0)) board.close();
});

describe('uploading the module over the Espruino REPL', () => {
  it('sends the module with XON/XOFF flow control, save()s it and verifies HELLO; the board then boots it', async () => {
    // A REPL slower (16 bytes/ms) than the uploader sends (64 bytes every 2 ms): its buffer fills.
    const { board, port } = await fresh({ replBytesPerMs: 16 });
    const progress: UploadProgress[] = [];
    const result = await uploadToEspruino(port, MODULE, { onProgress: (p) => progress.push(p) });

    expect(result.hello).toMatchObject({ type: 'hello', reply: true, name: 'tether-espruino PICO_R1_3' });
    expect(result.xoffPauses).toBeGreaterThan(0); // the board's buffer filled while it ran the module
    expect(board.stats.rxDropped).toBe(0); // and the uploader stopped in time
    const phases = [...new Set(progress.map((p) => p.phase))];
    expect(phases).toEqual(['connect', 'prepare', 'send', 'save', 'verify', 'done']);
    const sends = progress.filter((p) => p.phase === 'send').map((p) => p.sentBytes);
    expect(sends).toEqual([...sends].sort((a, b) => a - b));
    expect(progress.at(-1)!.sentBytes).toBe(progress.at(-1)!.totalBytes);
    expect(board.storage.has('.varimg')).toBe(true);

    // Power cycle: the saved program starts by itself and answers.
    const frames = framesFrom(port);
    board.powerCycle();
    await waitFor(() => frames.length >= 1, { timeoutMs: 1000, what: 'the boot HELLO of the saved program' });
    port.write(Buffer.from(replLineForFrame(encodeFrame({ type: 'ping', seq: 77, leaseMs: 0 })), 'latin1'));
    await waitFor(() => frames.length >= 2, { timeoutMs: 1000, what: 'the answer to a PING' });
    expect(frames.map((m) => m.type)).toEqual(['hello', 'pong']);
    expect(frames[0]).toMatchObject({ reply: false, bootId: result.hello.bootId + 1, resetCauses: ['power-on'] });
  });

  it('replaces a running module that sleeps and kicks its watchdog by hand, without a watchdog reset', async () => {
    const { board, port } = await fresh();
    const fast = { chunkBytes: 256, chunkDelayMs: 1 };
    await uploadToEspruino(port, MODULE, fast);
    port.write(
      Buffer.from(
        replLineForFrame(encodeFrame({ type: 'config-set', config: { watchdogMs: 500, policy: 'sleep', hostTimeoutMs: 0, sleepMs: 10_000, awakeMs: 100 } })),
        'latin1',
      ),
    );
    await waitFor(() => board.runMode === 'sleeping', { timeoutMs: 2000, what: 'the module to put the board to sleep' });
    const result = await uploadToEspruino(port, MODULE, fast);
    expect(result.hello.reply).toBe(true);
    expect(board.stats.rxDropped).toBe(0);
    await sleep(700); // a fixed wait on purpose: longer than the 500 ms watchdog, and no reset
    expect(board.stats.resets.watchdog).toBe(0);
  });

  it('waits for the end of save() before it verifies (save() runs only after all queued input has run)', async () => {
    const { board, port } = await fresh({ saveMs: 1500 });
    const writes: Array<{ at: number; text: string }> = [];
    const write = port.write.bind(port);
    port.write = (bytes: Uint8Array) => {
      writes.push({ at: performance.now(), text: Buffer.from(bytes).toString('latin1') });
      return write(bytes);
    };
    let savedAt = 0;
    board.on('saved', () => (savedAt = performance.now()));
    const result = await uploadToEspruino(port, MODULE, { chunkBytes: 256, chunkDelayMs: 1 });
    const helloRequest = replLineForFrame(encodeFrame({ type: 'hello-request' })).trim();
    const firstVerify = writes.find((w) => w.text.includes(helloRequest));
    expect(savedAt).toBeGreaterThan(0);
    expect(firstVerify!.at).toBeGreaterThanOrEqual(savedAt);
    expect(result.hello.reply).toBe(true);
    expect(board.stats.resets).toMatchObject({ watchdog: 0 });
  });

  it('without flow control the board loses bytes (what XON/XOFF is for)', async () => {
    const { board, port } = await fresh();
    port.write(Buffer.from(moduleLines(MODULE).map((l) => `\x10${l}\n`).join(''), 'latin1'));
    await waitFor(() => board.stats.rxDropped > 0, { timeoutMs: 1000, what: 'bytes dropped by the board' });
  });

  it('fails with code-error when the board rejects the code, and no-repl when nothing answers', async () => {
    const { port } = await fresh();
    await expect(uploadToEspruino(port, 'var x = (function () {\n  return nope(;\n})();\n')).rejects.toMatchObject({ code: 'code-error' });

    class Silent extends EventEmitter<TransportEvents> implements Transport {
      readonly description = 'silent';
      readonly isOpen = true;
      async open() {}
      write() {
        return true;
      }
      async close() {}
    }
    const error = await uploadToEspruino(new Silent(), MODULE, { stepTimeoutMs: 100 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UploadError);
    expect(error).toMatchObject({ code: 'no-repl' });
  });
});
