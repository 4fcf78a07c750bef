import http from 'node:http';

export interface SseEvent {
  event: string;
  data: string;
  /** performance.now() when it arrived. */
  at: number;
}

/** A server-sent event stream read in Node, event by event, with when it ended (if it did). */
export class SseClient {
  readonly events: SseEvent[] = [];
  status: number | null = null;
  headers: http.IncomingHttpHeaders = {};
  /** performance.now() when the response ended or the connection closed. */
  endedAt: number | null = null;
  readonly openedAt = performance.now();
  private readonly req: http.ClientRequest;
  private buffer = '';

  constructor(url: string, headers: Record<string, string> = {}) {
    this.req = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      this.status = res.statusCode ?? null;
      this.headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => this.feed(chunk));
      res.on('close', () => (this.endedAt ??= performance.now()));
    });
    this.req.on('error', () => (this.endedAt ??= performance.now()));
  }

  of(event: string): SseEvent[] {
    return this.events.filter((e) => e.event === event);
  }

  async waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (events: ${this.events.map((e) => e.event).join(', ')})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.req.destroy();
  }

  private feed(chunk: string): void {
    this.buffer += chunk;
    for (;;) {
      const end = this.buffer.indexOf('\n\n');
      if (end < 0) return;
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
        else if (line.startsWith('retry: ')) event = 'retry';
      }
      this.events.push({ event, data: event === 'retry' ? block.slice(7) : data.join('\n'), at: performance.now() });
    }
  }
}
