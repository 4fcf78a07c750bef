import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { listenHttp } from '../http/listen-http.ts';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../log/logger.ts';
import { PACKAGE_ROOT } from '../paths.ts';
import type { Clock, WallClock } from '../time/clock.ts';
import type { StatusModel, StatusUpdate } from './status-model.ts';

/** The page's files, shipped in the package as they are (no build step). */
export const STATUS_PAGE_DIR = join(PACKAGE_ROOT, 'host', 'status-page', 'public');

export interface StatusServerOptions {
  /** 0 picks a free port. */
  port: number;
  /** Default 127.0.0.1. */
  bind?: string;
  /** A heartbeat on every open stream this often (ms), below the idle timeouts of proxies. */
  heartbeatMs: number;
  model: StatusModel;
  clock: Clock & WallClock;
  logger?: Logger;
}

export interface StatusServer {
  /** http://bind:port/ (the port actually bound). */
  readonly url: string;
  readonly port: number;
  /** Streams open now. */
  readonly streams: number;
  /** Heartbeats sent so far, over all streams. */
  readonly heartbeatsSent: number;
  /** Ends every stream, stops listening, drops connections: no handle is left. */
  close(): Promise<void>;
}

/** A stream whose client reads slower than this much unsent output is dropped (it reconnects and gets a snapshot). */
const MAX_BUFFERED_BYTES = 1024 * 1024;

const require = createRequire(import.meta.url);

interface Asset {
  file: string;
  type: string;
}

const ASSETS: Record<string, Asset> = {
  '/': { file: join(STATUS_PAGE_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/index.html': { file: join(STATUS_PAGE_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/app.js': { file: join(STATUS_PAGE_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: join(STATUS_PAGE_DIR, 'style.css'), type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: join(STATUS_PAGE_DIR, 'favicon.svg'), type: 'image/svg+xml' },
  // The chart library, served from the installed package.
  '/vendor/uPlot.iife.min.js': { file: require.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/vendor/uPlot.min.css': { file: require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

/**
 * The status page over node:http: the page's static files, GET /api/status (the snapshot as
 * JSON) and GET /events, a server-sent event stream: `retry`, a `snapshot` event on every
 * (re)connect, then `update` events as things change and a `heartbeat` event every
 * `heartbeatMs` so that proxies never see the stream idle. Read-only: any other method is 405.
 *
 * Server-sent events are a few lines of text framing on an HTTP response, and the browser's
 * EventSource does the reconnecting, so no framework is needed for them.
 */
export async function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const log = (options.logger ?? silentLogger).child({ component: 'status-page' });
  const bind = options.bind ?? '127.0.0.1';
  const { model, clock } = options;
  const streams = new Set<ServerResponse>();
  const files = new Map<string, Buffer>();
  let heartbeatsSent = 0;
  let heartbeatTimer: ReturnType<Clock['setTimeout']> | undefined;

  const send = (res: ServerResponse, event: string, data: unknown) => {
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      log.warn({ remote: res.req.socket.remoteAddress }, 'a status page reads too slowly: its stream is closed (it reconnects and gets a snapshot)');
      res.destroy();
      return;
    }
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };

  const onUpdate = (update: StatusUpdate) => {
    for (const res of streams) send(res, 'update', update);
  };
  model.on('update', onUpdate);

  const beat = () => {
    const at = clock.wallNow();
    for (const res of streams) {
      send(res, 'heartbeat', { at });
      heartbeatsSent++;
    }
    heartbeatTimer = clock.setTimeout(beat, options.heartbeatMs);
  };
  heartbeatTimer = clock.setTimeout(beat, options.heartbeatMs);

  const openStream = (req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // nginx: pass each event on at once, whatever proxy_buffering says.
      'x-accel-buffering': 'no',
    });
    req.socket.setNoDelay(true);
    req.socket.setKeepAlive(true, 30_000);
    // The browser waits this long before reconnecting after the stream ends.
    res.write(`retry: 1000\n\n`);
    send(res, 'snapshot', model.snapshot());
    streams.add(res);
    const remove = () => streams.delete(res);
    res.on('close', remove);
    res.on('error', remove);
    log.debug({ remote: req.socket.remoteAddress, streams: streams.size }, 'a status page connected');
  };

  const serveFile = async (path: string, req: IncomingMessage, res: ServerResponse) => {
    const asset = ASSETS[path]!;
    let body = files.get(path);
    if (!body) {
      body = await readFile(asset.file);
      files.set(path, body);
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': asset.type, 'content-length': body.length, 'cache-control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...SECURITY_HEADERS, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed: the status page is read-only\n');
      return;
    }
    if (path === '/events') return openStream(req, res);
    if (path === '/api/status') {
      const body = JSON.stringify(model.snapshot());
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path in ASSETS) {
      serveFile(path, req, res).catch((err: Error) => {
        log.error({ err: err.message, path }, 'cannot read a file of the status page');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('cannot read this file of the status page\n');
      });
      return;
    }
    res.writeHead(404, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' }).end('not found: the status page is at /\n');
  });
  // A request that never finishes its headers must not hold the daemon; streams are long on purpose.
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;

  let listening: { port: number; origin: string };
  try {
    listening = await listenHttp(server, options.port, bind, 'the status page', 'the port is in use (set http.port)');
  } catch (err) {
    clock.clearTimeout(heartbeatTimer!);
    model.off('update', onUpdate);
    throw err;
  }
  server.on('error', (err) => log.error({ err: err.message }, 'status page server error'));

  const { port } = listening;
  const url = `${listening.origin}/`;
  let closed: Promise<void> | null = null;
  return {
    url,
    port,
    get streams() {
      return streams.size;
    },
    get heartbeatsSent() {
      return heartbeatsSent;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        clock.clearTimeout(heartbeatTimer!);
        model.off('update', onUpdate);
        for (const res of streams) res.end();
        streams.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
