/**
 * The byte pipe the programmer talks through. A SerialPort is one (see `linkFromStream`);
 * a caller that already holds the board's port open (the daemon) can lend it this way.
 */
export interface ByteLink {
  /** Resolves when the bytes are handed to the OS. */
  write(bytes: Uint8Array): Promise<void>;
  /** Calls `listener` with every chunk received from now on; returns the unsubscribe. */
  onData(listener: (bytes: Uint8Array) => void): () => void;
}

/** The part of a Node stream (SerialPort, net.Socket, Duplex) a link needs. */
export interface DataStreamLike {
  write(chunk: Uint8Array, callback: (err?: Error | null) => void): unknown;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  off(event: 'data', listener: (chunk: Buffer) => void): unknown;
}

/** A ByteLink over an already-open stream; it does not own the stream (never closes it). */
export function linkFromStream(stream: DataStreamLike): ByteLink {
  return {
    write: (bytes) =>
      new Promise<void>((resolve, reject) => {
        // A copy: the write completes later and the caller may reuse its buffer.
        stream.write(Buffer.from(bytes), (err) => (err ? reject(err) : resolve()));
      }),
    onData(listener) {
      const onChunk = (chunk: Buffer) => listener(chunk);
      stream.on('data', onChunk);
      return () => void stream.off('data', onChunk);
    },
  };
}
