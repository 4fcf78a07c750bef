import net from 'node:net';

export interface MiddleboxRelayOptions {
  /** Where to relay to (loopback or a test's own network namespace). */
  targetHost?: string;
  targetPort: number;
  /**
   * A connection with no bytes in either direction for this long is forgotten, as a load
   * balancer or a NAT forgets an idle flow: from then on its bytes are dropped in both
   * directions and nobody is told (no FIN, no RST; the relay's kernel still ACKs, so TCP
   * keepalive on either end never notices). Off when omitted.
   */
  forgetIdleMs?: number;
}

export interface MiddleboxRelay {
  readonly port: number;
  /**
   * on: every byte in either direction is dropped (existing and new connections; new ones are
   * still accepted and connected upstream), and a close on one side is not passed on.
   * off: bytes pass again on connections not forgotten; pairs one side of which closed
   * meanwhile are closed now.
   */
  blackhole(on: boolean): void;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections forgotten after being idle. */
  readonly forgotten: number;
  /** Client connections still open. */
  openCount(): number;
  /** Resets every open connection (both sides closed at once), as a restarted middlebox would. */
  cut(): void;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  lastTraffic: number;
  forgotten: boolean;
  severed: boolean;
}

/**
 * A user-space TCP relay modelling a middlebox that silently forgets idle connections and/or
 * blackholes the path for a while (see toolchain-facts: a relay that stops forwarding).
 */
export async function startMiddleboxRelay(options: MiddleboxRelayOptions): Promise<MiddleboxRelay> {
  const pairs = new Set<Pair>();
  let blackholed = false;
  let accepted = 0;
  let forgotten = 0;

  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect({ host: options.targetHost ?? '127.0.0.1', port: options.targetPort });
    const pair: Pair = { client, upstream, lastTraffic: Date.now(), forgotten: false, severed: false };
    pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const forward = (to: net.Socket) => (chunk: Buffer) => {
      if (blackholed || pair.forgotten || pair.severed || to.destroyed) return;
      pair.lastTraffic = Date.now();
      to.write(chunk);
    };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    const onClose = (other: net.Socket) => () => {
      if (blackholed || pair.forgotten) {
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

  const sweeper =
    options.forgetIdleMs === undefined
      ? null
      : setInterval(() => {
          const now = Date.now();
          for (const pair of pairs) {
            if (!pair.forgotten && now - pair.lastTraffic >= options.forgetIdleMs!) {
              pair.forgotten = true;
              forgotten++;
            }
          }
        }, Math.max(10, Math.min(100, options.forgetIdleMs / 20)));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as net.AddressInfo;

  const destroyPair = (pair: Pair) => {
    pair.client.destroy();
    pair.upstream.destroy();
    pairs.delete(pair);
  };

  return {
    port,
    get accepted() {
      return accepted;
    },
    get forgotten() {
      return forgotten;
    },
    blackhole(on: boolean) {
      blackholed = on;
      if (on) return;
      const now = Date.now();
      for (const pair of pairs) {
        if (pair.severed || pair.client.destroyed || pair.upstream.destroyed) destroyPair(pair);
        // The outage does not count as idleness of the flows that survive it.
        else if (!pair.forgotten) pair.lastTraffic = now;
      }
    },
    openCount: () => [...pairs].filter((p) => !p.client.destroyed).length,
    cut() {
      for (const pair of pairs) destroyPair(pair);
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (sweeper) clearInterval(sweeper);
        server.close(() => resolve());
        for (const pair of pairs) destroyPair(pair);
      }),
  };
}
