import mqtt, { type MqttClient } from 'mqtt';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonProcess } from './daemon-process.ts';

/** One message a board topic carried, with the owner identity its MQTT 5 User Properties gave (none: the broker's Will). */
export interface OwnedMessage {
  topic: string;
  payload: string;
  retain: boolean;
  owner: string | undefined;
  instance: string | undefined;
  epoch: number | undefined;
  at: number;
}

/**
 * A subscriber to one board's Homie topics that records who published each message (MQTT 5
 * User Properties `tether-owner`, `tether-instance`, `tether-epoch`): it counts publishers.
 */
export class OwnerWatcher {
  readonly received: OwnedMessage[] = [];
  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      const props = (packet.properties?.userProperties ?? {}) as Record<string, string | string[]>;
      const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
      const epoch = one(props['tether-epoch']);
      this.received.push({
        topic,
        payload: payload.toString(),
        retain: packet.retain,
        owner: one(props['tether-owner']),
        instance: one(props['tether-instance']),
        epoch: epoch === undefined ? undefined : Number(epoch),
        at: performance.now(),
      });
    });
  }

  static async connect(url: string, board: string, protocolVersion: 4 | 5 = 5): Promise<OwnerWatcher> {
    const client = await mqtt.connectAsync(url, { protocolVersion, clean: true, reconnectPeriod: 200, connectTimeout: 5000 });
    const watcher = new OwnerWatcher(client);
    await client.subscribeAsync(`homie/5/${board}/#`, { qos: 1 });
    return watcher;
  }

  /** The first message after index `since` matching. */
  find(match: (m: OwnedMessage) => boolean, since = 0): OwnedMessage | undefined {
    return this.received.slice(since).find(match);
  }

  /**
   * The publishers in the order they took turns ("gw-a/<instance>" ...), one entry per run of
   * messages from the same one. Messages without an owner (the Will) are skipped.
   */
  publisherTurns(): string[] {
    const turns: string[] = [];
    for (const m of this.received) {
      if (m.owner === undefined || m.retain) continue; // a retained copy replays an earlier publish
      const who = `${m.owner}/${m.instance}`;
      if (turns.at(-1) !== who) turns.push(who);
    }
    return turns;
  }

  async publish(topic: string, payload: string): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: 1 });
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

/** A `tether daemon` config for one gateway of a pair sharing board `board` behind `boardUrl`. */
export function pairDaemonConfig(options: {
  gatewayId: string;
  brokerUrl: string;
  board: string;
  boardUrl: string;
  standby: boolean;
  dir: string;
  willDelaySec?: number;
  takeoverDelayMs?: number;
  /** Default 5; RabbitMQ 3.10 speaks 4 (3.1.1) only. */
  protocolVersion?: 4 | 5;
  /** Home Assistant discovery (default off). */
  homeassistant?: boolean;
}): Record<string, unknown> {
  return {
    gateway: { id: options.gatewayId },
    broker: {
      url: options.brokerUrl,
      protocolVersion: options.protocolVersion ?? 5,
      ...(options.willDelaySec !== undefined ? { willDelaySec: options.willDelaySec } : {}),
      backoff: { initialMs: 100, maxMs: 2000 },
      keepaliveTraffic: { learn: false },
    },
    queue: { dir: join(options.dir, 'queue'), fsync: 'never' },
    log: { level: 'info' },
    control: { enabled: false },
    homeassistant: { enabled: options.homeassistant ?? false },
    devices: [
      {
        id: options.board,
        port: options.boardUrl,
        keepalive: { intervalMs: 250, misses: 4 },
        standby: options.standby,
        ...(options.takeoverDelayMs !== undefined ? { takeoverDelayMs: options.takeoverDelayMs } : {}),
        components: [{ type: 'relay', id: 'pump', pin: 8 }],
      },
    ],
  };
}

/** A daemon of the pair in its own directory (its own queue lock). */
export function pairDaemon(options: Omit<Parameters<typeof pairDaemonConfig>[0], 'dir'>, dir = mkdtempSync(join(tmpdir(), `tether-${options.gatewayId}-`))): DaemonProcess {
  return new DaemonProcess(pairDaemonConfig({ ...options, dir }), dir);
}

/** Opening the bridge to the board and the tether handshake after a claim (measured 0.1-0.3 s here). */
export const BRIDGE_AND_HANDSHAKE_MS = 2000;
/** Slack for a loaded 2-core CI machine shared with other test runs. */
export const LOADED_MACHINE_SLACK_MS = 3000;

/**
 * The bound from kill -9 of the owner to `ready` from the standby, as README "More than one
 * gateway" states it:
 *
 *   detection + takeoverDelayMs + BRIDGE_AND_HANDSHAKE_MS (2 s) + LOADED_MACHINE_SLACK_MS (3 s)
 *
 * where detection is the time until the broker publishes the owner's Will: the kernel closes
 * the killed process's sockets at once, so it is `willDelaySec` plus up to 1 s (Mosquitto runs
 * its Will timer once a second); on MQTT 3.1.1 (no Will Delay) up to 1 s.
 */
export function failoverBoundMs(settings: { willDelaySec: number; takeoverDelayMs: number }): number {
  const detectionMs = settings.willDelaySec * 1000 + 1000;
  return detectionMs + settings.takeoverDelayMs + BRIDGE_AND_HANDSHAKE_MS + LOADED_MACHINE_SLACK_MS;
}
