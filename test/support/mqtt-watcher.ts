import mqtt, { type MqttClient } from 'mqtt';
import { waitFor } from './wait-for.ts';

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
  at: number;
}

/** A subscriber that records everything it receives (a persistent session when `clientId` is given). */
export class MqttWatcher {
  readonly received: Received[] = [];
  private constructor(
    readonly client: MqttClient,
    private readonly topic: string,
  ) {
    client.on('message', (topic, payload, packet) => this.received.push({ topic, payload: payload.toString(), retain: packet.retain, at: performance.now() }));
  }

  static async connect(url: string, topic: string, options: { clientId?: string; protocolVersion?: 4 | 5 } = {}): Promise<MqttWatcher> {
    const persistent = options.clientId !== undefined;
    const client = mqtt.connect(url, {
      clientId: options.clientId,
      clean: !persistent,
      protocolVersion: options.protocolVersion ?? 4,
      reconnectPeriod: 200,
      connectTimeout: 2000,
      // MQTT 5 ends a session at disconnect unless it asks for an expiry.
      properties: persistent && options.protocolVersion === 5 ? { sessionExpiryInterval: 3600 } : undefined,
    });
    const watcher = new MqttWatcher(client, topic);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    await client.subscribeAsync(topic, { qos: 1 });
    return watcher;
  }

  /**
   * After a broker restart: resolves once the client is connected again and the broker has
   * acknowledged its subscription (a SUBACK to a fresh SUBSCRIBE), so that nothing published
   * from then on can miss it.
   */
  async resubscribed(timeoutMs = 15_000): Promise<void> {
    await waitFor(() => this.client.connected, { timeoutMs, intervalMs: 20, what: 'the watcher to reconnect' });
    await this.client.subscribeAsync(this.topic, { qos: 1 });
  }

  /** The latest payload on `topic`, or undefined. */
  last(topic: string): string | undefined {
    for (let i = this.received.length - 1; i >= 0; i--) if (this.received[i]!.topic === topic) return this.received[i]!.payload;
    return undefined;
  }

  async waitFor(topic: string, payload: string | ((p: string) => boolean), timeoutMs = 15_000, since = 0): Promise<Received> {
    const match = (r: Received) => r.topic === topic && (typeof payload === 'string' ? r.payload === payload : payload(r.payload));
    return await waitFor(() => this.received.slice(since).find(match), {
      timeoutMs,
      intervalMs: 20,
      what: `${topic} = ${typeof payload === 'string' ? payload : '(predicate)'}`,
      detail: () => `last: ${this.last(topic)}`,
    });
  }

  async publish(topic: string, payload: string | Buffer): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: 1 });
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}
