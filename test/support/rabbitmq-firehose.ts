import amqp, { type Channel, type ChannelModel } from 'amqplib';
import type { RabbitCluster } from './rabbitmq-cluster.ts';

/** One message published to the broker, as RabbitMQ's firehose tracer reported it. */
export interface TracedPublish {
  /** The AMQP routing key: the MQTT topic with `/` turned into `.` by the MQTT plugin. */
  routingKey: string;
  payload: string;
  /** The publishing connection ("127.0.0.1:<client port> -> 127.0.0.1:<server port>"). */
  connection: string;
  /** The node the publisher is connected to. */
  node: string;
  /** Arrival order at the tracer's queue. */
  seq: number;
  at: number;
}

/** The run of messages one connection published: first and last by arrival. */
export interface PublisherWindow {
  connection: string;
  node: string;
  first: number;
  last: number;
  count: number;
}

/**
 * A subscriber counting publishers on a RabbitMQ cluster, where MQTT 3.1.1 carries no
 * publisher identity. It reads RabbitMQ's firehose tracer: `rabbitmqctl trace_on` (per node,
 * per vhost) makes each node copy every message published on it to the topic exchange
 * `amq.rabbitmq.trace` with routing key `publish.<exchange>` and headers naming the routing
 * keys, the node and the publishing `connection`; MQTT publishes go through `amq.topic`, the
 * broker's Will of a connection too (under that connection's name). Checked on Debian's
 * rabbitmq-server 3.10.8. Consumed here over AMQP 0-9-1 (amqplib) from one node: the trace
 * exchange is cluster-wide, so one queue sees what every node traced.
 */
export class FirehoseWatcher {
  readonly received: TracedPublish[] = [];

  private constructor(
    private readonly model: ChannelModel,
    private readonly channel: Channel,
  ) {}

  /**
   * Turns tracing on on every node of `cluster` and consumes the trace of publishes whose
   * routing key starts with `routingKeyPrefix` (e.g. `homie.5.b1.`), from node `consumeFrom`.
   */
  static async start(cluster: RabbitCluster, routingKeyPrefix: string, consumeFrom = cluster.nodes.length - 1): Promise<FirehoseWatcher> {
    for (let i = 0; i < cluster.nodes.length; i++) await cluster.ctl(i, ['trace_on']);
    const model = await amqp.connect(cluster.nodes[consumeFrom]!.amqpUrl);
    const channel = await model.createChannel();
    const watcher = new FirehoseWatcher(model, channel);
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, 'amq.rabbitmq.trace', 'publish.#');
    await channel.consume(
      queue,
      (msg) => {
        if (!msg) return;
        const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
        const keys = Array.isArray(headers.routing_keys) ? headers.routing_keys.map(String) : [];
        const routingKey = keys.find((k) => k.startsWith(routingKeyPrefix));
        if (routingKey === undefined) return;
        watcher.received.push({
          routingKey,
          payload: msg.content.toString(),
          connection: String(headers.connection),
          node: String(headers.node),
          seq: watcher.received.length,
          at: performance.now(),
        });
      },
      { noAck: true },
    );
    return watcher;
  }

  /** The first traced message after index `since` matching. */
  find(match: (m: TracedPublish) => boolean, since = 0): TracedPublish | undefined {
    return this.received.slice(since).find(match);
  }

  /**
   * Each publishing connection's window (first to last message), ordered by first message.
   * `include` leaves out what is not the board's own (a consumer's `/set`).
   */
  publisherWindows(include: (m: TracedPublish) => boolean = () => true): PublisherWindow[] {
    const windows = new Map<string, PublisherWindow>();
    for (const m of this.received) {
      if (!include(m)) continue;
      const w = windows.get(m.connection);
      if (w) {
        w.last = m.seq;
        w.count++;
      } else windows.set(m.connection, { connection: m.connection, node: m.node, first: m.seq, last: m.seq, count: 1 });
    }
    return [...windows.values()].sort((a, b) => a.first - b.first);
  }

  /** Pairs of windows that overlap: two connections publishing for the board at the same time. */
  static overlaps(windows: readonly PublisherWindow[]): Array<[PublisherWindow, PublisherWindow]> {
    const out: Array<[PublisherWindow, PublisherWindow]> = [];
    for (let i = 0; i < windows.length; i++) {
      for (let j = i + 1; j < windows.length; j++) {
        if (windows[j]!.first < windows[i]!.last) out.push([windows[i]!, windows[j]!]);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    await this.channel.close().catch(() => undefined);
    await this.model.close().catch(() => undefined);
  }
}
