import { createRequire } from 'node:module';
import net from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { applyTcpKeepalive, tcpKeepaliveForBound } from '../../host/transport/tcp-keepalive.ts';
import { TcpTransport } from '../../host/transport/tcp-transport.ts';

const nk = createRequire(import.meta.url)('net-keepalive') as {
  getKeepAliveInterval(s: net.Socket): number;
  getKeepAliveProbes(s: net.Socket): number;
  getUserTimeout(s: net.Socket): number;
};

/** The probe count Node's setKeepAlive() leaves (libuv sets its own): what a socket with a user timeout keeps. */
async function nodeProbes(): Promise<number> {
  const server = net.createServer(() => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const socket = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1' });
  await new Promise((r) => socket.once('connect', r));
  socket.setKeepAlive(true, 5000);
  const probes = nk.getKeepAliveProbes(socket);
  socket.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  return probes;
}

let NODE_PROBES = Number.NaN;
beforeAll(async () => {
  NODE_PROBES = await nodeProbes();
  // Not any of the counts the tests ask for: else "not set" could not be told from "set".
  expect([4, 6, 7, 2]).not.toContain(NODE_PROBES);
});

describe('TCP keepalive and TCP_USER_TIMEOUT from a bound', () => {
  it('gives the socket up at the bound, probes after half an interval (at least 1 s), every second', () => {
    expect(tcpKeepaliveForBound(3000, 1000)).toEqual({ keepAliveIdleMs: 1000, keepAliveIntervalMs: 1000, keepAliveCount: 3, userTimeoutMs: 3000 });
    // The broker leg's default: keepalive 30 s + 5 s for the PINGRESP.
    expect(tcpKeepaliveForBound(35_000, 30_000)).toEqual({ keepAliveIdleMs: 15_000, keepAliveIntervalMs: 1000, keepAliveCount: 35, userTimeoutMs: 35_000 });
    // Kernel limits: whole seconds, at most 127 probes.
    expect(tcpKeepaliveForBound(600_000, 200)).toMatchObject({ keepAliveIdleMs: 1000, keepAliveCount: 127 });
  });

  it('takes what the config sets over what the bound gives', () => {
    expect(tcpKeepaliveForBound(3000, 1000, { userTimeoutMs: 0, keepAliveIdleMs: 7000, keepAliveCount: undefined })).toEqual({
      keepAliveIdleMs: 7000,
      keepAliveIntervalMs: 1000,
      keepAliveCount: 3,
      userTimeoutMs: 0,
    });
  });

  it('sets them on a real socket (read back with net-keepalive), and TcpTransport does so once connected', async () => {
    const server = net.createServer(() => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const socket = net.connect({ port, host: '127.0.0.1' });
    await new Promise((r) => socket.once('connect', r));
    expect(applyTcpKeepalive(socket, { keepAliveIdleMs: 2000, keepAliveIntervalMs: 2000, keepAliveCount: 4, userTimeoutMs: 4500 })).toEqual({ full: true });
    // The count is Node's own (libuv: 10): with a user timeout the kernel ends keepalive by the
    // timeout, never by the count (tcp(7)), so it is not set (issue 15: a call less per socket).
    expect([nk.getKeepAliveInterval(socket), nk.getKeepAliveProbes(socket), nk.getUserTimeout(socket)]).toEqual([2000, NODE_PROBES, 4500]);
    socket.destroy();

    let made: net.Socket | null = null;
    const t = new TcpTransport('127.0.0.1', port, {
      keepalive: tcpKeepaliveForBound(6000, 2000),
      createSocket: () => (made = new net.Socket()),
    });
    await t.open();
    expect([nk.getKeepAliveInterval(made!), nk.getKeepAliveProbes(made!), nk.getUserTimeout(made!)]).toEqual([1000, NODE_PROBES, 6000]);
    await t.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('sockets set one after the other with different values each keep their own (the native ints are shared per value)', async () => {
    const server = net.createServer(() => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const settings = [
      { keepAliveIdleMs: 2000, keepAliveIntervalMs: 2000, keepAliveCount: 4, userTimeoutMs: 4500 },
      { keepAliveIdleMs: 1000, keepAliveIntervalMs: 3000, keepAliveCount: 7, userTimeoutMs: 9000 },
      { keepAliveIdleMs: 2000, keepAliveIntervalMs: 2000, keepAliveCount: 4, userTimeoutMs: 4500 },
      { keepAliveIdleMs: 1000, keepAliveIntervalMs: 1000, keepAliveCount: 2, userTimeoutMs: 0 },
    ];
    const sockets: net.Socket[] = [];
    for (const s of settings) {
      const socket = net.connect({ port, host: '127.0.0.1' });
      await new Promise((r) => socket.once('connect', r));
      expect(applyTcpKeepalive(socket, s)).toEqual({ full: true });
      sockets.push(socket);
    }
    const read = sockets.map((socket) => [nk.getKeepAliveInterval(socket), nk.getKeepAliveProbes(socket), nk.getUserTimeout(socket)]);
    // userTimeoutMs 0 leaves the kernel's default (0: none).
    expect(read).toEqual([[2000, NODE_PROBES, 4500], [3000, NODE_PROBES, 9000], [2000, NODE_PROBES, 4500], [1000, 2, 0]]);
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('never throws on a socket without a file descriptor: Node keepalive only, with the reason', () => {
    const socket = new net.Socket();
    const applied = applyTcpKeepalive(socket, tcpKeepaliveForBound(3000, 1000));
    expect(applied.full).toBe(false);
    expect(applied.error).toBeTruthy();
  });
});
