import { join } from 'node:path';
import type { Extension } from '../extensions/extension.ts';
import type { Gateway } from '../gateway/gateway.ts';
import { startControlServer, type ControlServer } from './control-server.ts';
import { DeviceFlasher } from './device-flasher.ts';

/** The local control socket (`tether flash --daemon`), at `control.socket` or `<queue.dir>/control.sock`. */
export class ControlSocketExtension implements Extension {
  readonly name = 'control';
  private server: ControlServer | null = null;

  constructor(private readonly gateway: Gateway) {}

  get path(): string | null {
    return this.server?.path ?? null;
  }

  async start(): Promise<void> {
    const { gateway } = this;
    const path = gateway.config.control.socket ?? join(gateway.config.queue.dir, 'control.sock');
    const flasher = new DeviceFlasher({ clock: gateway.clock, logger: gateway.log });
    this.server = await startControlServer(path, gateway.devices, gateway.log, flasher);
  }

  async stop(): Promise<void> {
    await this.server?.close();
    this.server = null;
  }
}
