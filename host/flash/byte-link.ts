import type { Transport } from '../transport/transport.ts';

/**
 * The byte pipe the programmer talks through: a view of a Transport (see linkFromTransport),
 * so flashing and the keepalive link share one serial abstraction.
 */
export interface ByteLink {
  /** Resolves once the bytes are queued to the port; rejects if it is not open. */
  write(bytes: Uint8Array): Promise<void>;
  /** Calls `listener` with every chunk received from now on; returns the unsubscribe. */
  onData(listener: (bytes: Uint8Array) => void): () => void;
}

/** A ByteLink over an open transport; it does not own the transport (never closes it). */
export function linkFromTransport(transport: Pick<Transport, 'write' | 'on' | 'off' | 'description'>): ByteLink {
  return {
    write: (bytes) =>
      transport.write(bytes) ? Promise.resolve() : Promise.reject(new Error(`${transport.description} is not open`)),
    onData(listener) {
      const onChunk = (chunk: Buffer) => listener(chunk);
      transport.on('data', onChunk);
      return () => void transport.off('data', onChunk);
    },
  };
}
