import type { Extension } from '../extensions/extension.ts';
import type { Gateway } from '../gateway/gateway.ts';
import { EventLoopDelay } from './event-loop-delay.ts';
import type { MetricsServer } from './metrics-server.ts';

/** The Prometheus endpoint (`metrics: { port, host }`), loaded only when configured. */
export class MetricsExtension implements Extension {
  readonly name = 'metrics';
  private server: MetricsServer | null = null;
  private loopDelay: EventLoopDelay | null = null;

  constructor(
    private readonly gateway: Gateway,
    private readonly settings: { port: number; host: string },
  ) {}

  /** http://host:port/metrics, once started. */
  get url(): string | null {
    return this.server?.url ?? null;
  }

  async start(): Promise<void> {
    const [{ startMetricsServer }, { gatewayMetricsSource }] = await Promise.all([import('./metrics-server.ts'), import('./tether-metrics.ts')]);
    const { gateway } = this;
    const loopDelay = new EventLoopDelay();
    this.loopDelay = loopDelay;
    const source = { ...gatewayMetricsSource(gateway), eventLoopDelay: () => loopDelay.take(), memoryUsage: () => process.memoryUsage() };
    this.server = await startMetricsServer({ ...this.settings, source, logger: gateway.log });
    gateway.log.info({ url: this.server.url }, `Prometheus metrics at ${this.server.url}`);
  }

  async stop(): Promise<void> {
    await this.server?.close();
    this.server = null;
    this.loopDelay?.close();
    this.loopDelay = null;
  }
}
