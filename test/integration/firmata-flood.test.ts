import { readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { DaemonProcess } from '../support/daemon-process.ts';

// A tcp:// peer that is no board (or a board gone mad) floods the real daemon with bytes that
// are no tether frames: an F0 and then 10 MiB (then 10 more) of data bytes with no F7. Before the cap,
// firmata.js collected all of it (the daemon grew by 279 MiB); now at most 4 KiB is held and
// the rest is dropped, counted and logged.

const FLOOD_BYTES = 10 * 1024 * 1024;

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a tcp:// peer flooding the daemon with non-tether bytes', () => {
  it('10 MiB after an F0 without F7: the daemon stays small, drops and counts the bytes, logs it rate-limited', async () => {
    let resolvePeer!: (s: net.Socket) => void;
    const connected = new Promise<net.Socket>((resolve) => (resolvePeer = resolve));
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      resolvePeer(socket);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const daemon = new DaemonProcess({
      gateway: { id: 'gw' },
      broker: { embeddedPort: 0 },
      metrics: { port: 0 },
      devices: [{ id: 'flooded', port: `tcp://127.0.0.1:${port}`, tcp: { reopenOnLost: false }, keepalive: { intervalMs: 500, misses: 3 }, components: [{ type: 'led', id: 'status', pin: 13 }] }],
    });
    daemon.start();
    try {
      const socket = await connected;
      await daemon.waitForLog((l) => /^gateway gw started/.test(l.msg ?? ''));
      await sleep(2000); // settled: Johnny-Five loaded, handshakes under way
      const pid = daemon.pid!;
      const before = rssMiB(pid);

      // F0, then 10 MiB of 0x01 in 64 KiB writes, as fast as the daemon takes them.
      const chunk = Buffer.alloc(64 * 1024, 0x01);
      const flood = async (bytes: number) => {
        for (let sent = 0; sent < bytes; sent += chunk.length) {
          if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
        }
        await new Promise<void>((r) => socket.write(Buffer.alloc(0), () => r()));
        await sleep(1500); // the last bytes read and parsed
      };
      const started = performance.now();
      socket.write(Buffer.of(0xf0));
      await flood(FLOOD_BYTES);
      const after = rssMiB(pid);
      const seconds = (performance.now() - started) / 1000;
      // Another 10 MiB of the same sysex: nothing is kept, so the daemon does not grow again.
      await flood(FLOOD_BYTES);
      const afterTwice = rssMiB(pid);
      console.log(
        `RSS before ${before.toFixed(1)} MiB, after 10 MiB without F7 ${after.toFixed(1)} MiB (+${(after - before).toFixed(1)}, sent in ${seconds.toFixed(1)} s), after 20 MiB ${afterTwice.toFixed(1)} MiB`,
      );

      const overflow = daemon.logs.filter((l) => /^a sysex from the board is longer than 4096 bytes/.test(l.msg ?? ''));
      expect(overflow).toHaveLength(1);
      // What remains is garbage of the read path (the frame splitter copies each 64 KiB read
      // a few times) that V8's young generation absorbs: bounded, and not growing with more input.
      expect(after - before).toBeLessThan(64);
      expect(afterTwice - after).toBeLessThan(10);

      // The F7 ends it: one line with the count, and what follows reaches firmata.js again.
      socket.write(Buffer.of(0xf7));
      const dropped = await daemon.waitForLog((l) => /^dropped a \d+-byte sysex \(longer than 4096 bytes\)/.test(l.msg ?? ''), 5000);
      expect(dropped).toMatchObject({ bytes: 2 * FLOOD_BYTES + 2, droppedBytes: 2 * FLOOD_BYTES + 2, tooLong: 1 });

      const metrics = String((await daemon.waitForLog((l) => /^Prometheus metrics at /.test(l.msg ?? ''))).url);
      const text = await (await fetch(metrics)).text();
      expect(text).toMatch(new RegExp(`^tether_firmata_dropped_bytes_total\\{device="flooded"\\} ${2 * FLOOD_BYTES + 2}$`, 'm'));

      // Many long ones in a row: at most 5 lines a minute, the rest counted.
      const long = Buffer.concat([Buffer.of(0xf0), Buffer.alloc(5000, 0x02), Buffer.of(0xf7)]);
      for (let i = 0; i < 50; i++) socket.write(long);
      await sleep(1500);
      const lines = daemon.logs.filter((l) => /^(a sysex from the board is longer|dropped a )/.test(l.msg ?? ''));
      expect(lines.length).toBeLessThanOrEqual(5);
      expect(rssMiB(pid) - before).toBeLessThan(64);
    } finally {
      await daemon.kill9();
      (await Promise.race([connected, null]))?.destroy();
      server.close();
    }
  });
});
