import { findTool } from './find-tool.ts';
import type { Browser } from 'playwright-core';

/** Debian's chromium package. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

export function chromiumInstalled(): boolean {
  return findTool('chromium') === CHROMIUM_PATH;
}

/**
 * Headless Debian Chromium driven by playwright-core (no browser download). The flags keep it
 * off the network (this machine has none but loopback) and allow running as root.
 */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
