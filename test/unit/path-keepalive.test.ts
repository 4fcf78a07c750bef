import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import type { IdleProbeResult } from '../../host/mqtt/idle-probe.ts';
import { PathKeepalive, pathKey } from '../../host/mqtt/path-keepalive.ts';

const K = 30_000;

/** A proxy closing connections idle for `timeoutMs`, as the probe connection sees it. */
function proxy(timeoutMs: number, clock: ManualClock, probes: number[]) {
  return (idleMs: number): Promise<IdleProbeResult> =>
    new Promise((resolve) => {
      probes.push(idleMs);
      const closed = idleMs >= timeoutMs;
      clock.setTimeout(() => resolve(closed ? { outcome: 'closed', idleMs: timeoutMs } : { outcome: 'survived', idleMs }), closed ? timeoutMs : idleMs);
    });
}

async function settle(clock: ManualClock, ms: number, step = 100): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(step);
    await new Promise((r) => setImmediate(r));
  }
}

describe('PathKeepalive', () => {
  it('keys paths by URL without credentials', () => {
    expect(pathKey('mqtt://alice:secret@broker.example:1883')).toBe('mqtt://broker.example:1883');
    expect(pathKey('wss://bob:pw@proxy.example/mqtt?x=1')).toBe('wss://proxy.example/mqtt');
  });

  it('the first cut lowers every session at once with one warning naming the timeout; the probe confirms; a restart starts from the stored file', async () => {
    const clock = new ManualClock();
    const logger = new RecordingLogger();
    const store = join(mkdtempSync(join(tmpdir(), 'tether-path-')), 'keepalive-paths.json');
    const probes: number[] = [];
    const path = new PathKeepalive({ url: 'mqtt://u:pw@proxy.local:1883', keepaliveMs: K, storeFile: store, probe: proxy(15_000, clock, probes), clock, logger });
    await path.start();
    const seen: number[] = [];
    path.onIntervalChange((ms) => seen.push(ms));
    expect(path.intervalMs).toBe(K);

    path.cut(15_000, 'closed');
    expect(seen).toEqual([13_500]);
    const warnings = logger.records.filter((e) => e.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toBe('connections to mqtt://proxy.local:1883 are cut after 15.0 s idle (closed by the path): PINGREQ every 13.5 s from now on (was 30.0 s)');
    expect(path.stats).toMatchObject({ intervalMs: 13_500, timeoutMs: 15_000, exact: false, learned: false, drops: { closed: 1, 'half-open': 0 } });

    await settle(clock, 20_000);
    expect(probes).toEqual([16_500]);
    expect(path.stats).toMatchObject({ exact: true, learned: true, probes: 1 });
    expect(logger.records.some((e) => /^learned the idle timeout of mqtt:\/\/proxy\.local:1883: 15\.0 s; PINGREQ every 13\.5 s/.test(e.msg ?? ''))).toBe(true);
    path.stop();
    await path.flushed();

    const stored = JSON.parse(readFileSync(store, 'utf8'));
    expect(Object.keys(stored.paths)).toEqual(['mqtt://proxy.local:1883']);
    expect(stored.paths['mqtt://proxy.local:1883']).toMatchObject({ intervalMs: 13_500, timeoutMs: 15_000, exact: true });
    expect(readFileSync(store, 'utf8')).not.toContain('pw');
    expect(statSync(store).mode & 0o777).toBe(0o600);

    const again = new PathKeepalive({ url: 'mqtt://proxy.local:1883', keepaliveMs: K, storeFile: store, probe: proxy(15_000, clock, probes), clock, logger });
    await again.start();
    expect(again.intervalMs).toBe(13_500);
    await settle(clock, 5000);
    expect(probes).toEqual([16_500]); // nothing to search
    again.stop();
  });

  it('a fixed interval: no learning, no probe, cuts still counted', async () => {
    const clock = new ManualClock();
    const probes: number[] = [];
    const path = new PathKeepalive({ url: 'mqtt://b:1883', keepaliveMs: K, fixedIntervalMs: 25_000, storeFile: null, probe: proxy(15_000, clock, probes), clock });
    await path.start();
    path.cut(15_000, 'closed');
    await settle(clock, 20_000, 1000);
    expect(path.intervalMs).toBe(25_000);
    expect(probes).toEqual([]);
    expect(path.stats.drops.closed).toBe(1);
    path.stop();
  });
});
