import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { LeaseRegistry, type Lease } from '../../host/session/lease-registry.ts';

function registry() {
  const clock = new ManualClock();
  const leases = new LeaseRegistry({ clock });
  const changes: boolean[] = [];
  const expired: string[] = [];
  leases.on('change', (held) => changes.push(held));
  leases.on('expire', (name) => expired.push(name));
  return { clock, leases, changes, expired };
}

describe('LeaseRegistry', () => {
  it('holds while a lease is active and emits change only when held flips', () => {
    const { leases, changes } = registry();
    expect(leases.held).toBe(false);
    const a = leases.acquire('dashboard');
    expect(leases.held).toBe(true);
    expect(changes).toEqual([true]);
    const b = leases.acquire('upload');
    expect(changes).toEqual([true]);
    a.release();
    expect(leases.held).toBe(true);
    expect(changes).toEqual([true]);
    b.release();
    expect(leases.held).toBe(false);
    expect(changes).toEqual([true, false]);
    leases.acquire('again');
    expect(changes).toEqual([true, false, true]);
  });

  it('counts the same name twice: held until both handles are released', () => {
    const { leases, changes } = registry();
    const first = leases.acquire('dashboard');
    const second = leases.acquire('dashboard');
    expect(first).not.toBe(second);
    expect(leases.count('dashboard')).toBe(2);
    expect(leases.names()).toEqual([{ name: 'dashboard', count: 2 }]);
    first.release();
    expect(leases.count('dashboard')).toBe(1);
    expect(leases.held).toBe(true);
    second.release();
    expect(leases.count('dashboard')).toBe(0);
    expect(leases.names()).toEqual([]);
    expect(changes).toEqual([true, false]);
  });

  it('release() is idempotent per handle: releasing one twice does not end another', () => {
    const { leases, changes } = registry();
    const first = leases.acquire('dashboard');
    leases.acquire('dashboard');
    first.release();
    first.release();
    expect(first.active).toBe(false);
    expect(leases.count('dashboard')).toBe(1);
    expect(leases.held).toBe(true);
    expect(changes).toEqual([true]);
  });

  it('names() lists held names with counts, sorted', () => {
    const { leases } = registry();
    leases.acquire('zeta');
    leases.acquire('alpha');
    leases.acquire('zeta');
    expect(leases.names()).toEqual([
      { name: 'alpha', count: 1 },
      { name: 'zeta', count: 2 },
    ]);
    expect(leases.size).toBe(3);
  });

  it('a lease with a ttl expires by itself, emitting expire then change', () => {
    const { clock, leases, changes, expired } = registry();
    const lease = leases.acquire('command', { ttlMs: 5000 });
    clock.advance(4999);
    expect(leases.held).toBe(true);
    expect(lease.active).toBe(true);
    clock.advance(1);
    expect(leases.held).toBe(false);
    expect(lease.active).toBe(false);
    expect(expired).toEqual(['command']);
    expect(changes).toEqual([true, false]);
    lease.release(); // after expiry: nothing happens
    expect(changes).toEqual([true, false]);
  });

  it('releasing a ttl lease early cancels its timer', () => {
    const { clock, leases, expired } = registry();
    const lease = leases.acquire('command', { ttlMs: 5000 });
    expect(clock.pending).toBe(1);
    lease.release();
    expect(clock.pending).toBe(0);
    clock.advance(10_000);
    expect(expired).toEqual([]);
  });

  it('ttl expiry of one handle leaves the other handles of the name held', () => {
    const { clock, leases, changes } = registry();
    leases.acquire('dashboard');
    leases.acquire('dashboard', { ttlMs: 100 });
    clock.advance(100);
    expect(leases.count('dashboard')).toBe(1);
    expect(changes).toEqual([true]);
  });

  it('close() clears all timers and forgets leases silently; later calls are safe or rejected', () => {
    const { clock, leases, changes, expired } = registry();
    const lease = leases.acquire('a', { ttlMs: 1000 });
    leases.acquire('b', { ttlMs: 2000 });
    leases.acquire('c');
    expect(clock.pending).toBe(2);
    leases.close();
    expect(clock.pending).toBe(0);
    expect(leases.held).toBe(false);
    expect(leases.names()).toEqual([]);
    clock.advance(5000);
    lease.release();
    expect(changes).toEqual([true]);
    expect(expired).toEqual([]);
    expect(() => leases.acquire('d')).toThrow(/closed/);
    leases.close();
  });

  it.each([[''], [undefined as unknown as string]])('rejects the lease name %o', (name) => {
    const { leases } = registry();
    expect(() => leases.acquire(name)).toThrow(RangeError);
  });

  it.each([[0], [-1], [Number.NaN], [Infinity]])('rejects ttlMs %o', (ttlMs) => {
    const { clock, leases } = registry();
    expect(() => leases.acquire('x', { ttlMs })).toThrow(/ttlMs must be a finite number > 0/);
    expect(leases.held).toBe(false);
    expect(clock.pending).toBe(0);
  });

  it('held always equals "some handle is active", and change events alternate (property)', () => {
    type Op = { kind: 'acquire'; name: string; ttlMs?: number } | { kind: 'release'; index: number } | { kind: 'advance'; ms: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('acquire' as const), name: fc.constantFrom('a', 'b', 'c'), ttlMs: fc.option(fc.integer({ min: 1, max: 500 }), { nil: undefined }) }),
      fc.record({ kind: fc.constant('release' as const), index: fc.nat() }),
      fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 300 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const { clock, leases, changes } = registry();
        const handles: Lease[] = [];
        for (const o of ops) {
          if (o.kind === 'acquire') handles.push(leases.acquire(o.name, o.ttlMs === undefined ? {} : { ttlMs: o.ttlMs }));
          else if (o.kind === 'release') handles[o.index % Math.max(1, handles.length)]?.release();
          else clock.advance(o.ms);
          const active = handles.filter((h) => h.active);
          expect(leases.held).toBe(active.length > 0);
          expect(leases.size).toBe(active.length);
          for (const name of ['a', 'b', 'c']) expect(leases.count(name)).toBe(active.filter((h) => h.name === name).length);
          changes.forEach((held, i) => expect(held).toBe(i % 2 === 0));
          expect(changes.length % 2 === 1).toBe(leases.held);
        }
        leases.close();
        expect(clock.pending).toBe(0);
      }),
    );
  });
});
