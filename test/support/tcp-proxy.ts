import { startMiddleboxRelay } from './middlebox-relay.ts';

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

/** A loopback TCP proxy to 127.0.0.1:targetPort that can silently blackhole its connections: the relay without forgetting. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const relay = await startMiddleboxRelay({ targetPort });
  return { port: relay.port, blackhole: relay.blackhole, connectionCount: relay.openCount, cut: relay.cut, close: relay.close };
}
