import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { DeviceLink } from '../../host/link/device-link.ts';
import { TetherIO } from '../../host/tether-io/tether-io.ts';
import { waitFor } from '../support/wait-for.ts';

/** The part of DeviceLink TetherIO uses: its state and events set by the test, Firmata writes recorded. */
class FakeLink extends EventEmitter {
  state = 'init';
  readonly options = { target: 'tcp://fake:1' };
  readonly writes: number[][] = [];
  writeFirmata(bytes: Uint8Array | readonly number[]): void {
    this.writes.push([...bytes]);
  }
  start(): void {}
  async close(): Promise<void> {}
  to(state: string): void {
    const from = this.state;
    this.state = state;
    this.emit('state', { from, to: state, cause: 'test', at: Date.now() });
  }
}

const VERSION_QUERY = [0xf9, 0xf0, 0x79, 0xf7];
const asked = (link: FakeLink) => link.writes.filter((w) => w.length === VERSION_QUERY.length && w.every((b, i) => b === VERSION_QUERY[i])).length;

describe('TetherIO: firmata.js handshake retries', () => {
  it('asks a sleeping board again, once per sleep (the link queues the query and wakes it), not a lost one', async () => {
    const link = new FakeLink();
    const io = new TetherIO({ port: link.options.target, link: link as unknown as DeviceLink });
    try {
      link.to('ready');
      link.emit('up');
      expect(asked(link)).toBe(1); // the first ask, at link up: the answer is lost (the board falls asleep)
      link.to('sleeping');
      // Once while it sleeps (1 s ticks), not again at every tick of the same sleep.
      await waitFor(() => asked(link) === 2, { what: 'the handshake asked again of the sleeping board', timeoutMs: 3000, intervalMs: 20 });
      await new Promise((r) => setTimeout(r, 2200)); // two more ticks of the same sleep: a fixed wait on purpose (nothing must happen)
      expect(asked(link)).toBe(2);
      // Asleep again later: asked once more.
      link.to('ready');
      link.to('sleeping');
      await waitFor(() => asked(link) === 3, { what: 'one ask in the next sleep', timeoutMs: 3000, intervalMs: 20 });
      // A lost board is not written to.
      link.to('lost');
      const before = link.writes.length;
      await new Promise((r) => setTimeout(r, 2200)); // two ticks: a fixed wait on purpose (nothing must happen)
      expect(link.writes.length).toBe(before);
    } finally {
      await io.close();
    }
  }, 15_000);
});
