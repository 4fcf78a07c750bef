import { Store, type IStore } from 'mqtt';

type Packet = Parameters<IStore['put']>[0];
type PacketCallback = Parameters<IStore['del']>[1];
type DoneCallback = Parameters<IStore['put']>[1];

/** What an empty store streams at connect: nothing. Never written to, so one serves every session. */
const EMPTY = new Store();

/**
 * An mqtt.js packet store (a client's in-flight outgoing QoS 1 publishes, or incoming QoS 2
 * ones) that holds a Map only while a packet is in it. mqtt.js's own Store keeps a Map and an
 * options object from construction, and a client has two: about 0.6 KiB of live heap per board
 * for stores that are empty nearly all the time (a board publishes a few QoS 1 messages a minute
 * at steady state, and we never subscribe at QoS 2). Same answers as mqtt.js's Store (missing
 * packets, the replay stream at connect, which is mqtt.js's own); close() forgets the packets.
 */
export class LazyStore implements IStore {
  private packets: Map<number | undefined, Packet> | null = null;

  /** Packets held now. */
  get size(): number {
    return this.packets?.size ?? 0;
  }

  put(packet: Packet, cb: DoneCallback): this {
    (this.packets ??= new Map()).set(packet.messageId, packet);
    cb?.();
    return this;
  }

  /** mqtt.js replays these at connect (in insertion order), through its own Store's stream. */
  createStream(): ReturnType<IStore['createStream']> {
    if (!this.packets) return EMPTY.createStream();
    const replay = new Store();
    for (const packet of this.packets.values()) replay.put(packet, () => {});
    return replay.createStream();
  }

  del(packet: Pick<Packet, 'messageId'>, cb: PacketCallback): this {
    const held = this.packets?.get(packet.messageId);
    if (held) {
      this.packets!.delete(packet.messageId);
      if (this.packets!.size === 0) this.packets = null;
      cb(undefined, held);
    } else cb?.(new Error('missing packet'));
    return this;
  }

  get(packet: Pick<Packet, 'messageId'>, cb: PacketCallback): this {
    const held = this.packets?.get(packet.messageId);
    if (held) cb(undefined, held);
    else cb?.(new Error('missing packet'));
    return this;
  }

  close(cb: DoneCallback): void {
    this.packets = null;
    cb?.();
  }
}
