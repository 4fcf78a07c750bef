import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { TcpTransport } from '../../host/transport/tcp-transport.ts';
import { TransportError } from '../../host/transport/transport.ts';

/** A socket that connects only when told to. */
class FakeSocket extends EventEmitter {
  readonly calls: string[] = [];
  destroyed = false;
  connect(options: { host: string; port: number }) {
    this.calls.push(`connect ${options.host}:${options.port}`);
    return this;
  }
  setKeepAlive(enable: boolean, delay: number) {
    this.calls.push(`keepalive ${enable} ${delay}`);
    return this;
  }
  setNoDelay(noDelay: boolean) {
    this.calls.push(`nodelay ${noDelay}`);
    return this;
  }
  destroy() {
    this.calls.push('destroy');
    if (!this.destroyed) {
      this.destroyed = true;
      queueMicrotask(() => this.emit('close', false));
    }
    return this;
  }
}

let clock: ManualClock;

describe('TcpTransport connect (fake socket, fake time)', () => {
  beforeEach(() => {
    clock = new ManualClock();
  });

  it("gives up after connectTimeoutMs with 'timeout', destroys the socket and leaves no timer", async () => {
    const socket = new FakeSocket();
    const t = new TcpTransport('10.0.0.5', 2000, { connectTimeoutMs: 3000, clock, createSocket: () => socket as unknown as Socket });
    const opened = t.open().catch((e: unknown) => e);
    await clock.advanceAsync(2999);
    expect(socket.destroyed).toBe(false);
    await clock.advanceAsync(1);
    const err = (await opened) as TransportError;
    expect(err).toBeInstanceOf(TransportError);
    expect(err.code).toBe('timeout');
    expect(err.message).toBe('tcp://10.0.0.5:2000: no connection within 3000 ms');
    expect(socket.destroyed).toBe(true);
    expect(t.isOpen).toBe(false);
    expect(clock.pending).toBe(0);
  });

  it('defaults to a 5000 ms connect timeout', async () => {
    const socket = new FakeSocket();
    const t = new TcpTransport('h', 1, { clock, createSocket: () => socket as unknown as Socket });
    const opened = t.open().catch((e: TransportError) => e.code);
    await clock.advanceAsync(4999);
    expect(socket.destroyed).toBe(false);
    await clock.advanceAsync(1);
    expect(await opened).toBe('timeout');
  });

  it('turns on keepalive (default 5000 ms, configurable) and no-delay once connected; the timeout no longer fires', async () => {
    for (const [options, delay] of [[{}, 5000], [{ keepAliveInitialDelayMs: 1234 }, 1234]] as const) {
      const socket = new FakeSocket();
      const t = new TcpTransport('h', 1, { ...options, clock, createSocket: () => socket as unknown as Socket });
      const opened = t.open();
      socket.emit('connect');
      await opened;
      expect(socket.calls).toEqual(['connect h:1', `keepalive true ${delay}`, 'nodelay true']);
      expect(clock.pending).toBe(0);
      await clock.advanceAsync(10_000);
      expect(t.isOpen).toBe(true);
    }
  });

  it("close() while connecting rejects open() with 'closed' and cancels the timeout", async () => {
    const socket = new FakeSocket();
    const t = new TcpTransport('h', 1, { clock, createSocket: () => socket as unknown as Socket });
    const opened = t.open().catch((e: TransportError) => e.code);
    await t.close();
    expect(await opened).toBe('closed');
    expect(socket.destroyed).toBe(true);
    expect(clock.pending).toBe(0);
  });

  it('open() twice is refused', async () => {
    const socket = new FakeSocket();
    const t = new TcpTransport('h', 1, { clock, createSocket: () => socket as unknown as Socket });
    const first = t.open();
    socket.emit('connect');
    await first;
    await expect(t.open()).rejects.toMatchObject({ code: 'invalid' });
  });
});
