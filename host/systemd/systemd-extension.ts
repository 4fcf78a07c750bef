import type { Extension } from '../extensions/extension.ts';
import type { Gateway } from '../gateway/gateway.ts';
import { createGatewayWatchdog } from './gateway-watchdog.ts';
import type { SystemdWatchdog } from './systemd-watchdog.ts';

/**
 * READY/STATUS/WATCHDOG/STOPPING for systemd (Type=notify), active only when started by it
 * (NOTIFY_SOCKET set). WATCHDOG=1 goes out only while the gateway is healthy.
 */
export class SystemdExtension implements Extension {
  readonly name = 'systemd';
  private dog: SystemdWatchdog | null = null;

  constructor(private readonly gateway: Gateway) {}

  /** The notifier, or null when not under systemd. */
  get watchdog(): SystemdWatchdog | null {
    return this.dog;
  }

  async start(): Promise<void> {
    this.dog = createGatewayWatchdog(this.gateway, this.gateway.log, { env: this.gateway.env, clock: this.gateway.clock });
    this.dog?.start();
  }

  /** STOPPING=1 first: systemd stops expecting WATCHDOG=1. */
  async beforeStop(): Promise<void> {
    await this.dog?.stop();
  }

  async stop(): Promise<void> {
    await this.dog?.stop();
    this.dog = null;
  }
}
