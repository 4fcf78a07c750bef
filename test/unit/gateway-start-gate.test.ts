import { describe, expect, it } from 'vitest';
import { StartGate } from '../../host/gateway/start-gate.ts';

const tick = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe('StartGate (boards\' MQTT sessions connecting a bounded number at a time)', () => {
  it('lets `limit` in at once; the next waits for a place, first come first served', async () => {
    const gate = new StartGate(2);
    const a = gate.tryEnter();
    const b = gate.tryEnter();
    expect(a).not.toBeNull();
    expect(b).not.toBeNull();
    expect(gate.tryEnter()).toBeNull();
    const order: string[] = [];
    const c = gate.enter().then((release) => (order.push('c'), release));
    const d = gate.enter().then((release) => (order.push('d'), release));
    await tick();
    expect(order).toEqual([]);
    expect(gate.queued).toBe(2);
    a!();
    await tick();
    expect(order).toEqual(['c']);
    expect(gate.inUse).toBe(2);
    b!();
    await tick();
    expect(order).toEqual(['c', 'd']);
    (await c)();
    (await d)();
    expect(gate.inUse).toBe(0);
  });

  it('a place given back twice counts once', async () => {
    const gate = new StartGate(1);
    const a = gate.tryEnter()!;
    const waiting = gate.enter();
    a();
    a();
    const b = await waiting;
    expect(gate.inUse).toBe(1);
    expect(gate.tryEnter()).toBeNull();
    b();
    expect(gate.inUse).toBe(0);
  });

  it('no place jumps the queue: tryEnter is refused while others wait', async () => {
    const gate = new StartGate(1);
    const a = gate.tryEnter()!;
    const waiting = gate.enter();
    expect(gate.tryEnter()).toBeNull();
    a();
    (await waiting)();
    expect(gate.tryEnter()).not.toBeNull();
  });

  it('rejects a limit that is not an integer >= 1', () => {
    expect(() => new StartGate(0)).toThrow(RangeError);
    expect(() => new StartGate(1.5)).toThrow(RangeError);
  });
});
