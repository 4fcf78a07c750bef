import type { Server } from 'node:net';

/** Starts `server` on host:port; rejects with the listen error (EADDRINUSE, EACCES...) instead of an 'error' event. */
export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
