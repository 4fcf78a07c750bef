import net from 'node:net';

export interface TcpProxy {
  /** The loopback port clients connect to. */
  readonly port: number;
  /**
   * on: every connection stays open but bytes in both directions are read and dropped, and a
   * close on one side is not passed to the other (a half-open link: neither end learns anything).
   * off: traffic passes again; bytes dropped meanwhile stay dropped, and a pair whose other side
   * closed while blackholed is closed now.
   */
  blackhole(on: boolean): void;
  /** How many client connections are open. */
  connectionCount(): number;
  /** Resets every open connection (both sides closed at once), as a restarted middlebox would. */
  cut(): void;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  /** One side closed while the link was blackholed. */
  severed: boolean;
}

/** A loopback TCP proxy to 127.0.0.1:targetPort that can silently blackhole its connections. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let blackholed = false;
  const pairs = new Set<Pair>();

  const server = net.createServer((client) => {
    const upstream = net.connect({ port: targetPort, host: '127.0.0.1' });
    const pair: Pair = { client, upstream, severed: false };
    pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const forward = (to: net.Socket) => (chunk: Buffer) => {
      if (!blackholed && !pair.severed && !to.destroyed) to.write(chunk);
    };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    const onClose = (other: net.Socket) => () => {
      if (blackholed) {
        pair.severed = true;
        return;
      }
      other.destroy();
      if (client.destroyed && upstream.destroyed) pairs.delete(pair);
    };
    client.on('close', onClose(upstream));
    upstream.on('close', onClose(client));
    client.on('error', () => {});
    upstream.on('error', () => {});
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as net.AddressInfo;

  return {
    port,
    blackhole(on: boolean) {
      blackholed = on;
      if (on) return;
      for (const pair of pairs) {
        if (pair.severed || pair.client.destroyed || pair.upstream.destroyed) {
          pair.client.destroy();
          pair.upstream.destroy();
          pairs.delete(pair);
        }
      }
    },
    connectionCount: () => [...pairs].filter((p) => !p.client.destroyed).length,
    cut() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      pairs.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const pair of pairs) {
          pair.client.destroy();
          pair.upstream.destroy();
        }
        pairs.clear();
      }),
  };
}
