import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { directWrite, directWriteAvailable, directWriteQueued } from '../../host/transport/direct-write.ts';
import { waitFor } from '../support/wait-for.ts';

// Real sockets on loopback: what is tested is how Node's TCP handle and libuv take the bytes.

let server: Server | null = null;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = null;
});

/** A server whose one accepted connection is handed back, and a client connected to it. */
async function pair(): Promise<{ client: Socket; peer: Socket }> {
  let accepted!: (s: Socket) => void;
  const peerP = new Promise<Socket>((resolve) => (accepted = resolve));
  server = net.createServer((s) => {
    sockets.push(s);
    accepted(s);
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const client = net.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, noDelay: true });
  sockets.push(client);
  client.on('error', () => {});
  await new Promise<void>((resolve) => client.once('connect', () => resolve()));
  return { client, peer: await peerP };
}

function frame(n: number, size: number): Buffer {
  const b = Buffer.alloc(size, n & 0xff);
  b.writeUInt32BE(n, 0);
  return b;
}

describe('directWrite (a small buffer straight to the socket handle)', () => {
  it('is available on this Node, and frames written so arrive whole and in order without the stream (no socket.write, nothing left queued)', async () => {
    expect(directWriteAvailable).toBe(true); // otherwise the daemon silently takes the slower path
    const { client, peer } = await pair();
    const received: Buffer[] = [];
    peer.on('data', (d) => received.push(d));
    let streamWrites = 0;
    const write = client.write.bind(client);
    client.write = ((...args: Parameters<Socket['write']>) => {
      streamWrites++;
      return write(...args);
    }) as Socket['write'];
    const sent: Buffer[] = [];
    for (let i = 0; i < 100; i++) {
      const f = frame(i, 14);
      sent.push(f);
      expect(directWrite(client, f)).toBe(true);
      expect(client.writableLength).toBe(0);
      expect(directWriteQueued(client)).toBe(0);
    }
    await waitFor(() => Buffer.concat(received).length >= 1400, { timeoutMs: 10_000, what: '1400 bytes at the peer' });
    expect(Buffer.concat(received)).toEqual(Buffer.concat(sent));
    expect(streamWrites).toBe(0);
  });

  it('when the kernel takes only part, the rest waits in libuv (queued, the next direct write declines) and socket.write() after it keeps the order', async () => {
    const { client, peer } = await pair();
    peer.pause(); // the peer reads nothing: the kernel's buffers fill
    const sent: Buffer[] = [];
    let n = 0;
    let declined = false;
    // Direct writes until one is queued in part; from then on (as TcpTransport does) socket.write().
    for (; n < 100_000 && !declined; n++) {
      const f = frame(n, 200);
      if (directWrite(client, f)) sent.push(f);
      else {
        declined = true;
        expect(directWriteQueued(client)).toBeGreaterThan(0); // a direct write still waiting in libuv
        client.write(f);
        sent.push(f);
      }
    }
    expect(declined).toBe(true);
    for (let i = 0; i < 50; i++) {
      const f = frame(n++, 200);
      expect(directWrite(client, f)).toBe(false); // something queued: the stream takes it, behind
      client.write(f);
      sent.push(f);
    }
    const total = sent.reduce((a, b) => a + b.length, 0);
    const received: Buffer[] = [];
    let got = 0;
    peer.on('data', (d) => {
      received.push(d);
      got += d.length;
    });
    peer.resume();
    await waitFor(() => got >= total, { timeoutMs: 20_000, what: `${total} bytes at the peer` });
    expect(Buffer.concat(received).equals(Buffer.concat(sent))).toBe(true);
    await waitFor(() => directWriteQueued(client) === 0 && client.writableLength === 0, { timeoutMs: 10_000, what: 'the queues to drain' });
    expect(directWrite(client, frame(0, 14))).toBe(true); // nothing queued any more: direct again
  });

  it('a write to a connection the peer reset fails the socket with the error socket.write() gives (error, then close), no exception', async () => {
    const { client, peer } = await pair();
    const errors: Array<Error & { code?: string; syscall?: string }> = [];
    client.removeAllListeners('error');
    client.on('error', (e) => errors.push(e));
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    peer.resetAndDestroy();
    // Write until the reset is seen (the first writes may still be taken by the kernel).
    await waitFor(
      () => {
        if (!client.destroyed && !directWrite(client, frame(1, 14)) && !client.destroyed) client.write(frame(1, 14));
        return client.destroyed;
      },
      { timeoutMs: 10_000, what: 'the client socket to fail' },
    );
    await closed;
    expect(errors.length).toBe(1);
    expect(['EPIPE', 'ECONNRESET']).toContain(errors[0]!.code);
  });

  it('declines (writes nothing) where it cannot keep the order or has no handle: data in the stream, a socket not connected, a destroyed one', async () => {
    const { client } = await pair();
    client.cork();
    client.write(frame(0, 14)); // held in the stream
    expect(client.writableLength).toBeGreaterThan(0);
    expect(directWrite(client, frame(1, 14))).toBe(false);
    client.uncork();
    const unconnected = new net.Socket();
    sockets.push(unconnected);
    expect(directWrite(unconnected, frame(2, 14))).toBe(false);
    client.destroy();
    expect(directWrite(client, frame(3, 14))).toBe(false);
  });
});
