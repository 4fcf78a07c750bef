import { createServer, type Server } from 'node:http';
import { listenHttp } from '../http/listen-http.ts';
import { silentLogger, type Logger } from '../log/logger.ts';
import { createTetherMetrics, type MetricsSource, type TetherMetrics } from './tether-metrics.ts';

/** Prometheus text format 0.0.4. */
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface MetricsServerOptions {
  /** 0 picks a free port. */
  port: number;
  /** Default 127.0.0.1 (loopback: expose it deliberately, e.g. 0.0.0.0, behind a firewall). */
  host?: string;
  source: MetricsSource;
  logger?: Logger;
}

export interface MetricsServer {
  /** http://host:port/metrics (the port actually bound). */
  readonly url: string;
  readonly port: number;
  readonly metrics: TetherMetrics;
  /** Stops listening, drops open connections, unsubscribes: no handle is left. */
  close(): Promise<void>;
}

/** Serves the Prometheus text format at GET /metrics; anything else is 404 (405 for other methods on /metrics). */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const log = (options.logger ?? silentLogger).child({ component: 'metrics' });
  const host = options.host ?? '127.0.0.1';
  const metrics = createTetherMetrics(options.source);

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    // `?name=a&name=b`: only those metrics (a full scrape is written in chunks, in turns of the
    // event loop; the event-loop delay or memory alone cost next to nothing).
    const names = new URL(req.url ?? '/', 'http://x').searchParams.getAll('name');
    res.statusCode = 200;
    res.setHeader('content-type', CONTENT_TYPE);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const write = (chunk: string): void | Promise<void> => {
      if (res.destroyed) throw new Error('the scraper went away');
      // Back-pressure: a slow scraper holds the scrape, not a copy of the whole text in memory.
      if (!res.write(chunk)) {
        return new Promise((resolve) => {
          const done = () => {
            res.off('drain', done).off('close', done);
            resolve();
          };
          res.on('drain', done).on('close', done);
        });
      }
    };
    metrics.scrape(write, { names }).then(
      () => res.end(),
      (err: Error) => {
        if (res.destroyed) return;
        log.error({ err: err.message }, 'collecting metrics failed');
        if (res.headersSent) res.destroy(err);
        else res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`collecting metrics failed: ${err.message}\n`);
      },
    );
  });
  // A scraper that never finishes its request must not hold the daemon.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;

  let listening: { port: number; origin: string };
  try {
    listening = await listenHttp(server, options.port, host, 'metrics');
  } catch (err) {
    metrics.close();
    throw err;
  }
  server.on('error', (err) => log.error({ err: err.message }, 'metrics server error'));

  const { port } = listening;
  const url = `${listening.origin}/metrics`;
  let closed: Promise<void> | null = null;
  return {
    url,
    port,
    metrics,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        metrics.close();
      });
      return closed;
    },
  };
}
