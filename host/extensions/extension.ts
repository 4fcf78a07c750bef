import type { GatewayEventBus, GatewayEvents } from '../gateway/gateway-events.ts';

/**
 * A part of the daemon that is not its core: it listens to the gateway's events and serves
 * something (Homie topics, /set commands, metrics, systemd, the control socket). Made by
 * create-extensions.ts from the config; the constructor does nothing.
 */
export interface Extension {
  /** For logs and the config (`<name>: { enabled: false }`). */
  readonly name: string;
  /** Called before the gateway connects anything: listen, subscribe, open what it serves. */
  start(): Promise<void>;
  /** Called first when the gateway stops, before any part stops (a last publish, STOPPING=1). */
  beforeStop?(): Promise<void>;
  /** Undoes exactly what start() did. Called after the devices and sessions stopped. */
  stop(): Promise<void>;
}

/** The listeners an extension put on the gateway's bus, removed together in stop(). */
export class EventSubscriptions {
  private readonly offs: Array<() => void> = [];

  constructor(private readonly bus: GatewayEventBus) {}

  on<K extends keyof GatewayEvents>(event: K, listener: (...args: GatewayEvents[K]) => void): void {
    const l = listener as (...args: unknown[]) => void;
    (this.bus as unknown as { on(e: string, l: unknown): void }).on(event, l);
    this.offs.push(() => (this.bus as unknown as { off(e: string, l: unknown): void }).off(event, l));
  }

  clear(): void {
    for (const off of this.offs.splice(0)) off();
  }
}
