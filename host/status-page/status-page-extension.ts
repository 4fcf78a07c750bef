import type { Extension } from '../extensions/extension.ts';
import type { Gateway } from '../gateway/gateway.ts';
import type { StatusModel } from './status-model.ts';
import type { StatusServer } from './status-server.ts';

export interface StatusPageSettings {
  port: number;
  bind: string;
  heartbeatSec: number;
}

/**
 * The live status page (`http: { port, bind }`): one page served by the daemon, kept up to
 * date over a server-sent event stream. Read-only. Its parts are loaded only in start().
 */
export class StatusPageExtension implements Extension {
  readonly name = 'http';
  private model: StatusModel | null = null;
  private server: StatusServer | null = null;

  constructor(
    private readonly gateway: Gateway,
    private readonly settings: StatusPageSettings,
  ) {}

  /** http://bind:port/, once started. */
  get url(): string | null {
    return this.server?.url ?? null;
  }

  /** The running server (streams open, heartbeats sent), once started. */
  get running(): StatusServer | null {
    return this.server;
  }

  async start(): Promise<void> {
    const [{ StatusModel }, { startStatusServer }] = await Promise.all([import('./status-model.ts'), import('./status-server.ts')]);
    const { gateway, settings } = this;
    const heartbeatMs = settings.heartbeatSec * 1000;
    const model = new StatusModel(gateway, { clock: gateway.clock, heartbeatMs });
    model.start();
    try {
      this.server = await startStatusServer({ port: settings.port, bind: settings.bind, heartbeatMs, model, clock: gateway.clock, logger: gateway.log });
    } catch (err) {
      model.stop();
      throw err;
    }
    this.model = model;
    gateway.log.info({ url: this.server.url }, `status page at ${this.server.url}`);
  }

  async stop(): Promise<void> {
    await this.server?.close();
    this.server = null;
    this.model?.stop();
    this.model = null;
  }
}
