import { existsSync, readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { ReconnectingTransport } from '../../host/transport/reconnecting-transport.ts';
import { TcpTransport } from '../../host/transport/tcp-transport.ts';
import { TransportError } from '../../host/transport/transport.ts';
import { activeResources, leakedSince } from '../support/handles.ts';
import { waitFor, within } from '../support/wait-for.ts';

/** A loopback "bridge": keeps its accepted sockets so a test can cut them. */
class Bridge {
  readonly server = net.createServer((s) => this.accepted(s));
  readonly sockets: net.Socket[] = [];
  received = '';
  private waiters: Array<() => void> = [];
  port = 0;

  private accepted(s: net.Socket) {
    this.sockets.push(s);
    s.on('data', (d) => {
      this.received += d.toString();
    });
    s.on('error', () => {});
    for (const w of this.waiters.splice(0)) w();
  }
  async listen(port = 0) {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }
  nextConnection(): Promise<net.Socket> {
    const before = this.sockets.length;
    return new Promise((resolve) => {
      const check = () => (this.sockets.length > before ? resolve(this.sockets.at(-1)!) : this.waiters.push(check));
      check();
    });
  }
  /** Stops listening and cuts every connection. */
  async shutdown() {
    for (const s of this.sockets) s.destroy();
    this.sockets.length = 0;
    if (this.server.listening) await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const nextClose = (t: TcpTransport) => new Promise<TransportError | null>((r) => t.once('close', r));

/** Linux: whether the kernel runs the keepalive timer (timer_active 2) for a local port, from /proc/net/tcp. */
function kernelKeepaliveTimer(localPort: number): boolean | null {
  if (!existsSync('/proc/net/tcp')) return null;
  const hex = localPort.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '01') return cols[5]!.startsWith('02:');
  }
  return null;
}

const bridges: Bridge[] = [];
const newBridge = () => {
  const b = new Bridge();
  bridges.push(b);
  return b;
};
afterEach(async () => {
  for (const b of bridges.splice(0)) await b.shutdown();
});

describe('TcpTransport against a loopback server (real sockets)', () => {
  it('carries bytes both ways and close() ends with close(null)', async () => {
    const baseline = activeResources();
    const bridge = newBridge();
    const port = await bridge.listen();
    const t = new TcpTransport('127.0.0.1', port);
    expect(t.description).toBe(`tcp://127.0.0.1:${port}`);
    const conn = bridge.nextConnection();
    await t.open();
    expect(t.isOpen).toBe(true);
    const server = await conn;

    let got = '';
    t.on('data', (d) => (got += d.toString()));
    server.write('from-board');
    expect(t.write(Buffer.from('to-board'))).toBe(true);
    await waitFor(() => got === 'from-board' && bridge.received === 'to-board', { timeoutMs: 3000, what: 'bytes both ways' });

    const serverSawEnd = new Promise<void>((r) => server.once('end', () => r()));
    const closeEvents: Array<TransportError | null> = [];
    t.on('close', (e) => closeEvents.push(e));
    let firstDone = false;
    const first = t.close().then(() => (firstDone = true));
    await t.close(); // a second close() waits for the same end
    expect(firstDone).toBe(true);
    await first;
    expect(closeEvents).toEqual([null]);
    await within(serverSawEnd, { timeoutMs: 5000, what: "the server's 'end'" });
    expect(t.isOpen).toBe(false);
    expect(t.write(Buffer.from('late'))).toBe(false);
    expect(t.listenerCount('data')).toBe(1); // only the test's own listener
    await bridge.shutdown();
    expect(await leakedSince(baseline)).toEqual({});
  });

  it("connection refused gives 'refused'", async () => {
    const bridge = newBridge();
    const port = await bridge.listen();
    await bridge.shutdown(); // the port is now free: nobody listens
    const t = new TcpTransport('127.0.0.1', port);
    const err = await t.open().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect(err).toMatchObject({ code: 'refused' });
    expect((err as Error).message).toContain(`tcp://127.0.0.1:${port}`);
    expect(t.isOpen).toBe(false);
  });

  it("the server destroying the connection (reset) gives close 'closed'", async () => {
    const bridge = newBridge();
    const t = new TcpTransport('127.0.0.1', await bridge.listen());
    const conn = bridge.nextConnection();
    await t.open();
    const closed = nextClose(t);
    (await conn).resetAndDestroy();
    const err = await closed;
    expect(err).toBeInstanceOf(TransportError);
    expect(err!.code).toBe('closed');
    expect(err!.message).toMatch(/reset/);
    expect(t.isOpen).toBe(false);
  });

  it("the server closing normally (EOF) gives close 'closed'", async () => {
    const bridge = newBridge();
    const t = new TcpTransport('127.0.0.1', await bridge.listen());
    const conn = bridge.nextConnection();
    await t.open();
    const closed = nextClose(t);
    (await conn).end();
    const err = await closed;
    expect(err).toMatchObject({ code: 'closed', message: expect.stringMatching(/remote end closed the connection/) });
  });

  it('enables TCP keepalive (default 5000 ms) and no-delay on the socket', async () => {
    const bridge = newBridge();
    const port = await bridge.listen();
    const calls: string[] = [];
    let socket: net.Socket | null = null;
    const t = new TcpTransport('127.0.0.1', port, {
      createSocket: () => {
        socket = new net.Socket();
        const s = socket;
        const keepAlive = s.setKeepAlive.bind(s);
        const noDelay = s.setNoDelay.bind(s);
        s.setKeepAlive = (enable?: boolean, delay?: number) => (calls.push(`keepalive ${enable} ${delay}`), keepAlive(enable, delay));
        s.setNoDelay = (on?: boolean) => (calls.push(`nodelay ${on}`), noDelay(on));
        return s;
      },
    });
    await t.open();
    expect(calls).toEqual(['keepalive true 5000', 'nodelay true']);
    // And the kernel agrees: the keepalive timer is armed on this connection (Linux only).
    const armed = kernelKeepaliveTimer(socket!.localPort!);
    if (armed !== null) expect(armed).toBe(true);
    await t.close();
  });
});

describe('ReconnectingTransport over TcpTransport (real sockets, real time)', () => {
  it('reconnects when the server listens again, data flows again, and stop() leaves nothing behind', async () => {
    const baseline = activeResources();
    const bridge = newBridge();
    const port = await bridge.listen();
    const logger = new RecordingLogger();
    const rt = new ReconnectingTransport(() => new TcpTransport('127.0.0.1', port), {
      backoff: { initialMs: 20, maxMs: 100 },
      logger,
    });
    const events: string[] = [];
    let got = '';
    rt.on('up', () => events.push('up'));
    rt.on('down', (e) => events.push(`down:${e.code}`));
    rt.on('data', (d) => (got += d.toString()));

    let conn = bridge.nextConnection();
    rt.start();
    let server = await conn;
    await waitFor(() => rt.isUp, { timeoutMs: 3000, what: 'first up' });
    server.write('one');
    await waitFor(() => got === 'one', { timeoutMs: 3000, what: 'data before the outage' });

    await bridge.shutdown(); // bridge reboots: connection cut, port closed
    await waitFor(() => events.includes('down:closed'), { timeoutMs: 3000, what: 'down' });
    expect(rt.write(Buffer.from('lost'))).toBe(false);
    // Let a few refused tries happen.
    await waitFor(() => logger.records.filter((r) => r.level === 'warn').length >= 3, { timeoutMs: 3000, what: 'retries' });
    expect(logger.records.filter((r) => r.level === 'warn').slice(1).every((r) => (r.obj as { code: string }).code === 'refused')).toBe(true);

    const back = newBridge();
    await back.listen(port);
    conn = back.nextConnection();
    server = await conn;
    await waitFor(() => rt.isUp, { timeoutMs: 3000, what: 'up again' });
    expect(events).toEqual(['up', 'down:closed', 'up']);
    server.write('two');
    expect(rt.write(Buffer.from('hello again'))).toBe(true);
    await waitFor(() => got === 'onetwo' && back.received === 'hello again', { timeoutMs: 3000, what: 'data after reconnect' });

    await rt.stop();
    await back.shutdown();
    await bridge.shutdown();
    expect(await leakedSince(baseline)).toEqual({});
  });
});

describe('TcpTransport reads without a Buffer per read (onread, real sockets)', () => {
  it('hands bytes to its receiver in one read buffer shared by every link, with no data events; data listeners get copies of their own', async () => {
    const bridge = newBridge();
    const port = await bridge.listen();
    const withReceiver = new TcpTransport('127.0.0.1', port);
    const withListener = new TcpTransport('127.0.0.1', port);
    const views: Uint8Array[] = [];
    let received = '';
    let dataEvents = 0;
    withReceiver.setReceiver((bytes, length) => {
      views.push(bytes);
      received += Buffer.from(bytes.subarray(0, length)).toString();
    });
    withReceiver.on('data', () => dataEvents++);
    const chunks: Buffer[] = [];
    withListener.on('data', (chunk) => chunks.push(chunk));
    const first = bridge.nextConnection();
    await withReceiver.open();
    const a = await first;
    const second = bridge.nextConnection();
    await withListener.open();
    const b = await second;
    a.write('hello');
    await waitFor(() => received === 'hello', { timeoutMs: 5000, what: 'the receiver to get hello' });
    b.write('world');
    await waitFor(() => chunks.length === 1, { timeoutMs: 5000, what: 'the data listener to get world' });
    a.write('again');
    await waitFor(() => received === 'helloagain', { timeoutMs: 5000, what: 'the receiver to get again' });
    b.write('later');
    await waitFor(() => chunks.length === 2, { timeoutMs: 5000, what: 'the data listener to get later' });
    expect(dataEvents).toBe(0);
    // One buffer for every read of every link: nothing allocated per read.
    expect(new Set(views).size).toBe(1);
    // The listener's chunks are copies: later reads into the shared buffer did not change them.
    expect(chunks.map((c) => c.toString())).toEqual(['world', 'later']);
    expect(chunks[0]!.buffer).not.toBe(views[0]!.buffer);
    await withReceiver.close();
    await withListener.close();
    await bridge.shutdown();
  });

  it("a socket made without onread (a createSocket hook's own) still delivers to the receiver", async () => {
    const bridge = newBridge();
    const port = await bridge.listen();
    const t = new TcpTransport('127.0.0.1', port, { createSocket: () => new net.Socket() });
    let received = '';
    t.setReceiver((bytes, length) => (received += Buffer.from(bytes.subarray(0, length)).toString()));
    const conn = bridge.nextConnection();
    await t.open();
    (await conn).write('plain');
    await waitFor(() => received === 'plain', { timeoutMs: 5000, what: 'the receiver to get the bytes' });
    await t.close();
    await bridge.shutdown();
  });

  it('says whether written bytes were handed to the kernel at once (pendingWriteBytes 0: the buffer may be reused)', async () => {
    const bridge = newBridge();
    const port = await bridge.listen();
    const t = new TcpTransport('127.0.0.1', port);
    const conn = bridge.nextConnection();
    await t.open();
    await conn;
    const frame = Buffer.from('ping-frame-14b');
    expect(t.write(frame)).toBe(true);
    expect(t.pendingWriteBytes).toBe(0);
    await waitFor(() => bridge.received === 'ping-frame-14b', { timeoutMs: 5000, what: 'the bridge to get the frame' });
    await t.close();
    expect(t.pendingWriteBytes).toBe(0);
    await bridge.shutdown();
  });

  it('ReconnectingTransport: the receiver gets the bytes, they count as activity, data listeners get copies; a throwing receiver is logged and the link stays up', async () => {
    const bridge = newBridge();
    const port = await bridge.listen();
    const logger = new RecordingLogger();
    const rt = new ReconnectingTransport(() => new TcpTransport('127.0.0.1', port), { backoff: { initialMs: 20, maxMs: 100 }, logger });
    let received = '';
    let fail = false;
    const silenceAtReceipt: number[] = [];
    rt.setReceiver((bytes, length) => {
      silenceAtReceipt.push(rt.silenceMs);
      received += Buffer.from(bytes.subarray(0, length)).toString();
      if (fail) throw new Error('receiver bug');
    });
    const copies: string[] = [];
    rt.on('data', (chunk) => copies.push(chunk.toString()));
    const conn = bridge.nextConnection();
    rt.start();
    const socket = await conn;
    await waitFor(() => rt.isUp, { timeoutMs: 5000, what: 'the link up' });
    socket.write('one');
    await waitFor(() => received === 'one', { timeoutMs: 5000, what: 'the receiver to get one' });
    // The bytes were activity before the receiver ran (same synchronous call: microseconds).
    expect(silenceAtReceipt[0]).toBeLessThan(5);
    fail = true;
    socket.write('two');
    await waitFor(() => received === 'onetwo', { timeoutMs: 5000, what: 'the receiver to get two' });
    expect(rt.isUp).toBe(true);
    expect(logger.records.some((r) => r.level === 'error' && /receiver threw/.test(r.msg ?? ''))).toBe(true);
    expect(copies.join('')).toBe('onetwo');
    await rt.stop();
    await bridge.shutdown();
  });
});
