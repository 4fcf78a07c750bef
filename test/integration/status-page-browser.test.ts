import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { BoardOnTcp } from '../../emulator/avr/board-on-tcp.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import type { StateChange } from '../../host/session/device-session.ts';
import { StatusPageExtension } from '../../host/status-page/status-page-extension.ts';
import { chromiumInstalled, launchChromium } from '../support/chromium.ts';
import { freePort } from '../support/free-port.ts';
import { findNginx, startNginx, type RunningNginx } from '../support/nginx.ts';

// The status page as a person sees it: Debian's Chromium (headless, driven by playwright-core)
// opens the page through nginx (basic authentication, a short proxy_read_timeout) while the
// emulated demo board runs the real firmware. The board is frozen (lost within its bound), its
// watchdog resets it (ready again), the daemon restarts (the page reconnects by itself), all
// without reloading the page; a second tab on a daemon with nothing to say shows the heartbeat
// keeping its stream open through the proxy.
//
// Scaled for CI: proxy_read_timeout 3s held for 12 s with a 1 s heartbeat. The issue's full
// length (proxy_read_timeout 15s for a minute, with the default 10 s heartbeat):
//   TETHER_STATUS_PROXY_TIMEOUT_SEC=15 TETHER_STATUS_HOLD_SEC=60 npx vitest run test/integration/status-page-browser.test.ts
// TETHER_STATUS_SCREENSHOT=docs/status-page.png also writes the screenshot there (the README's).

const inCi = process.env.CI === 'true';
const PROXY_TIMEOUT_SEC = Number(process.env.TETHER_STATUS_PROXY_TIMEOUT_SEC ?? 3);
const HOLD_SEC = Number(process.env.TETHER_STATUS_HOLD_SEC ?? 12);
/** Below the proxy's timeout: 1 s in the scaled run, the default (10 s) below 15 s. */
const HEARTBEAT_SEC = PROXY_TIMEOUT_SEC >= 15 ? undefined : 1;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const KEEPALIVE = { intervalMs: 500, misses: 4 };
const BOUND_MS = KEEPALIVE.intervalMs * KEEPALIVE.misses;
/** The board's watchdog: longer than the bound, so a frozen board is lost before it resets. */
const WATCHDOG_MS = 4000;
/** From the gateway's verdict to the page showing it: the stream and a render. */
const PAGE_LATENCY_MS = 1000;

const missing = [!chromiumInstalled() && 'chromium', !findNginx() && 'nginx'].filter(Boolean) as string[];

const user = { name: 'tether', password: 'a long passphrase' };

/** The demo's board and daemon (cli/commands/demo.ts), with a bound shorter than the watchdog. */
function demoConfig(dir: string, boardUrl: string, httpPort: number) {
  return validateConfig({
    gateway: { id: 'demo-gateway', name: 'tether demo' },
    broker: { embeddedPort: 0 },
    queue: { dir: join(dir, 'queue') },
    http: { port: httpPort, ...(HEARTBEAT_SEC ? { heartbeatSec: HEARTBEAT_SEC } : {}) },
    devices: [
      {
        id: 'demo-uno',
        name: 'Emulated Uno',
        port: boardUrl,
        keepalive: KEEPALIVE,
        config: { watchdogMs: WATCHDOG_MS },
        components: [
          { type: 'led', id: 'status', pin: 13 },
          { type: 'button', id: 'button', pin: 2 },
          { type: 'sensor', id: 'light', pin: 'A0', freq: 500, threshold: 8 },
        ],
      },
    ],
  });
}

async function quietGateway(dir: string, httpPort: number): Promise<Gateway> {
  const config = validateConfig({
    gateway: { id: 'quiet-gateway', name: 'a gateway with nothing to say' },
    broker: { embeddedPort: 0 },
    queue: { dir: join(dir, 'queue-quiet') },
    http: { port: httpPort, ...(HEARTBEAT_SEC ? { heartbeatSec: HEARTBEAT_SEC } : {}) },
    devices: [{ id: 'nowhere', port: `tcp://127.0.0.1:${await freePort()}` }],
  });
  return await Gateway.start(config, new RecordingLogger(), { env: {} });
}

interface StreamStats {
  opens: number;
  errors: number;
  snapshots: number;
  restarts: number;
  heartbeats: number;
  state: string;
}

const streamStats = (page: Page) => page.evaluate(() => ({ ...(window as unknown as { tetherStatus: StreamStats }).tetherStatus }));
const shownState = (page: Page) => page.evaluate(() => (document.querySelector('[data-device="demo-uno"]') as HTMLElement | null)?.dataset.state ?? null);

/** Waits until the board's card shows `state`; resolves with performance.now() in this process when it was seen. */
async function pageShows(page: Page, state: string, timeoutMs: number): Promise<number> {
  await page.waitForFunction((s) => (document.querySelector('[data-device="demo-uno"]') as HTMLElement | null)?.dataset.state === s, state, { timeout: timeoutMs, polling: 50 });
  return performance.now();
}

describe('status page in headless Chromium, through nginx', () => {
  if (missing.length > 0 && inCi) {
    it(`needs ${missing.join(' and ')} (Debian packages): missing on this CI machine`, () => {
      throw new Error(`${missing.join(' and ')} not installed; scripts/test-all.sh installs them`);
    });
    return;
  }

  const cleanup: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
  });

  it.skipIf(missing.length > 0)(
    `shows the demo board ready, lost within its bound when frozen, ready after its watchdog reset, then reconnects with its state after the daemon restarts; streams stay open through proxy_read_timeout ${PROXY_TIMEOUT_SEC}s for ${HOLD_SEC} s${missing.length ? ` (SKIPPED: ${missing.join(', ')} not installed)` : ''}`,
    { timeout: 120_000 + HOLD_SEC * 1000 },
    async () => {
      const started = performance.now();
      const dir = mkdtempSync(join(tmpdir(), 'tether-status-browser-'));
      const artifacts = join(dir, 'artifacts');
      mkdirSync(artifacts);
      const [browser, board, httpPort, quietPort] = await Promise.all([launchChromium(), BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH }), freePort(), freePort()]);
      cleanup.push(() => board.close());
      cleanup.push(() => (browser as Browser).close());
      let gateway = await Gateway.start(demoConfig(dir, board.url, httpPort), new RecordingLogger(), { env: {} });
      cleanup.push(() => gateway.stop());
      const quiet = await quietGateway(dir, quietPort);
      cleanup.push(() => quiet.stop());
      expect(gateway.extension(StatusPageExtension)!.url).toBe(`http://127.0.0.1:${httpPort}/`);
      const nginx: RunningNginx = await startNginx({
        readTimeoutSec: PROXY_TIMEOUT_SEC,
        user,
        locations: [
          { path: '/tether/', upstreamPort: httpPort, kind: 'http' },
          { path: '/quiet/', upstreamPort: quietPort, kind: 'http' },
        ],
      });
      cleanup.push(() => nginx.stop());
      expect((await fetch(`${nginx.url}/tether/`)).status).toBe(401); // the proxy asks who you are

      const context = await browser.newContext({ httpCredentials: { username: user.name, password: user.password }, viewport: { width: 1100, height: 860 } });
      const errors: string[] = [];
      const page = await context.newPage();
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${nginx.url}/tether/`);
      // Marks this document: a reload would lose it.
      await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
      const notReloaded = () => page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded === true);

      const quietPage = await context.newPage();
      await quietPage.goto(`${nginx.url}/quiet/`);
      await quietPage.waitForFunction(() => (window as unknown as { tetherStatus: StreamStats }).tetherStatus.snapshots === 1, null, { timeout: 10_000 });
      const holdFrom = performance.now();

      // 1. ready, with a few heartbeat round trips drawn.
      await pageShows(page, 'ready', 20_000);
      await page.waitForFunction(() => document.querySelectorAll('[data-device="demo-uno"] .chart canvas').length > 0, null, { timeout: 5000 });
      await new Promise((r) => setTimeout(r, 1000)); // a few round trips on the chart
      expect(await page.textContent('[data-device="demo-uno"] .state')).toBe('ready');
      expect(await page.textContent('#broker')).toBe('broker: connected');

      // 2. frozen: lost within the bound (the gateway's verdict), shown on the page right after.
      const device = gateway.devices[0]!;
      const gatewayLost = new Promise<StateChange>((resolve) => gateway.events.on('deviceState', (_d, c) => c.to === 'lost' && resolve(c)));
      board.uno.freeze();
      const frozenAt = performance.now();
      const lastPong = device.link.stats().lastSeen!;
      const shownLostAt = await pageShows(page, 'lost', BOUND_MS + PAGE_LATENCY_MS + 2000);
      const lost = await gatewayLost;
      const lostAfterPong = lost.at - lastPong;
      const pageAfterPong = shownLostAt - lastPong;
      console.log(
        `status page: frozen board lost ${Math.round(lost.at - frozenAt)} ms after the freeze, ${Math.round(lostAfterPong)} ms after its last PONG (bound ${BOUND_MS} ms); ` +
          `the page showed it ${Math.round(shownLostAt - lost.at)} ms later (${Math.round(pageAfterPong)} ms after the last PONG)`,
      );
      // The detector fires at the bound (exactly: device-link.test.ts); here, timers of a loaded machine may run a little late.
      expect(lostAfterPong).toBeLessThanOrEqual(BOUND_MS + 250);
      expect(pageAfterPong).toBeLessThanOrEqual(BOUND_MS + 250 + PAGE_LATENCY_MS);
      expect(await page.textContent('[data-device="demo-uno"] .changes li:first-child')).toMatch(/ready → lostno PONG for \d+ ms/);

      // 3. its watchdog resets it: ready again, the reboot listed by cause.
      const shownReadyAt = await pageShows(page, 'ready', WATCHDOG_MS + 8000);
      console.log(`status page: ready again ${Math.round(shownReadyAt - frozenAt)} ms after the freeze (watchdog ${WATCHDOG_MS} ms)`);
      await page.waitForFunction(() => document.querySelector('[data-device="demo-uno"] .reboot-log')?.textContent?.includes('watchdog'), null, { timeout: 3000 });
      expect(await page.textContent('[data-device="demo-uno"] .f-reboots')).toContain('watchdog ×1');
      expect(device.link.stats().reboots.watchdog).toBe(1);

      // A lease shows up without any request from the page.
      const lease = device.link.acquireLease('kitchen-display');
      await page.waitForFunction(() => document.querySelector('[data-device="demo-uno"] .f-leases')?.textContent === 'kitchen-display', null, { timeout: 3000 });
      expect(await notReloaded()).toBe(true);

      // 4. Both tabs' streams stayed open through nginx: one connection each, never an error.
      const holdLeft = HOLD_SEC * 1000 - (performance.now() - holdFrom);
      if (holdLeft > 0) await new Promise((r) => setTimeout(r, holdLeft));
      const quietStats = await streamStats(quietPage);
      const pageStats = await streamStats(page);
      console.log(
        `status page via nginx (proxy_read_timeout ${PROXY_TIMEOUT_SEC}s, heartbeat ${HEARTBEAT_SEC ?? 10} s): quiet tab open ${Math.round(performance.now() - holdFrom)} ms on ${quietStats.opens} connection(s), ${quietStats.heartbeats} heartbeats; demo tab ${pageStats.opens} connection(s), ${pageStats.errors} errors`,
      );
      expect(quietStats).toMatchObject({ opens: 1, errors: 0, snapshots: 1, state: 'live' });
      expect(quietStats.heartbeats).toBeGreaterThanOrEqual(Math.floor((HOLD_SEC - 1) / (HEARTBEAT_SEC ?? 10)));
      expect(pageStats).toMatchObject({ opens: 1, errors: 0, snapshots: 1, restarts: 0, state: 'live' });
      expect(nginx.accessLog().filter((l) => l.includes('/events'))).toEqual([]); // nginx logs a request when it ends: none did
      expect(errors).toEqual([]);

      const shot = join(artifacts, 'status-page.png');
      await page.screenshot({ path: shot });
      console.log(`status page: screenshot saved at ${shot}`);
      if (process.env.TETHER_STATUS_SCREENSHOT) await page.screenshot({ path: join(ROOT, process.env.TETHER_STATUS_SCREENSHOT) });
      lease.release();

      // 5. The daemon restarts: the page notices, retries on its own (nginx answers 502 meanwhile), and comes back with the new daemon's state.
      const stoppedAt = performance.now();
      await gateway.stop();
      await page.waitForFunction(() => document.body.dataset.stream === 'reconnecting', null, { timeout: 5000 });
      await new Promise((r) => setTimeout(r, 1500)); // down for a moment: the page's first retries fail
      const restartAt = performance.now();
      gateway = await Gateway.start(demoConfig(dir, board.url, httpPort), new RecordingLogger(), { env: {} });
      await page.waitForFunction(() => (window as unknown as { tetherStatus: StreamStats }).tetherStatus.restarts === 1, null, { timeout: 15_000 });
      const reconnectedAt = performance.now();
      await pageShows(page, 'ready', 15_000);
      const readyAgainAt = performance.now();
      const after = await streamStats(page);
      console.log(
        `status page: daemon down ${Math.round(restartAt - stoppedAt)} ms; the page reconnected ${Math.round(reconnectedAt - restartAt)} ms after the new daemon started (${after.opens} connections, ${after.errors} errors) and showed the board ready ${Math.round(readyAgainAt - restartAt)} ms after`,
      );
      expect(after).toMatchObject({ restarts: 1, state: 'live' });
      expect(after.opens).toBeGreaterThanOrEqual(2);
      expect(await notReloaded()).toBe(true);
      expect(await page.isVisible('#notice')).toBe(true);
      const changes = await page.$$eval('[data-device="demo-uno"] .changes li', (lis) => lis.map((li) => li.textContent ?? ''));
      expect(changes.some((c) => c.includes('daemon restarted'))).toBe(true);
      expect(changes.some((c) => /ready → lost/.test(c))).toBe(true); // what the page saw of the old daemon is kept
      expect(await shownState(page)).toBe('ready');
      await page.screenshot({ path: join(artifacts, 'status-page-after-restart.png') });
      console.log(`status page: whole browser test ${Math.round((performance.now() - started) / 1000)} s`);
    },
  );
});
