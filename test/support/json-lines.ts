import type { Readable } from 'node:stream';

/** Calls `onLine` with each JSON object a child process prints, one per line; other lines are ignored. */
export function onJsonLines<T>(stream: Readable, onLine: (value: T) => void): void {
  let buffered = '';
  stream.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line.startsWith('{')) onLine(JSON.parse(line) as T);
    }
  });
}
