import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import { LazyChildLogger, type LevelAwareLogger } from '../../host/log/lazy-child-logger.ts';

/** A real pino logger writing JSON lines into `lines`, counting the children it makes. */
function pinoInto(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const root = pino({ level, base: null, timestamp: false }, sink);
  let children = 0;
  const child = root.child.bind(root);
  const counted = Object.assign(Object.create(root) as pino.Logger, {
    child(bindings: pino.Bindings) {
      children++;
      return child(bindings);
    },
  });
  return { root: counted as unknown as LevelAwareLogger, lines, children: () => children };
}

describe('LazyChildLogger', () => {
  it('makes no pino child until a child logs at an enabled level', () => {
    const { root, lines, children } = pinoInto('warn');
    const log = LazyChildLogger.of(root);
    const device = log.child({ device: 'a' });
    const port = device.child({ port: 'tcp://x' });
    port.debug({ n: 1 }, 'below the level');
    port.info({ n: 2 }, 'below the level');
    expect(children()).toBe(0);
    expect((port as LazyChildLogger).materialised).toBe(false);
    expect(lines).toEqual([]);
    port.warn({ n: 3 }, 'at the level');
    expect(children()).toBe(1); // the device child, made by the real root; the port child by pino's device child
    expect((port as LazyChildLogger).materialised).toBe(true);
    expect((device as LazyChildLogger).materialised).toBe(true);
    port.error({ n: 4 });
    expect(lines).toEqual([
      { level: 40, device: 'a', port: 'tcp://x', n: 3, msg: 'at the level' },
      { level: 50, device: 'a', port: 'tcp://x', n: 4 },
    ]);
  });

  it("writes what pino's own children write, and the root's own lines unchanged", () => {
    const lazy = pinoInto('debug');
    const plain = pinoInto('debug');
    for (const log of [LazyChildLogger.of(lazy.root), plain.root]) {
      log.info({ a: 1 }, 'root line');
      const c = log.child({ device: 'd' }).child({ component: 'outbox' });
      c.debug({ b: 2 }, 'debug');
      c.info({ c: 3 });
      c.warn({ d: 4 }, 'warn');
    }
    expect(lazy.lines).toEqual(plain.lines);
    expect(lazy.lines).toHaveLength(4);
  });
});
