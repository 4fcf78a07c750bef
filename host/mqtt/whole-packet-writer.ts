import type { MqttClient } from 'mqtt';
import { generate, type Packet } from 'mqtt-packet';
import { encodePacket } from './packet-encoder.ts';

/** What of mqtt.js's client the writer replaces and uses (MqttClient's own `_writePacket`). */
interface PacketWritingClient {
  stream: NodeJS.WritableStream & { cork(): void; uncork(): void; destroy(err?: Error): void };
  options: { protocolVersion?: number };
  noop: (...args: unknown[]) => void;
  emit(event: 'packetsend', packet: Packet): boolean;
  _writePacket?: (packet: Packet, cb?: () => void) => void;
}

/**
 * Makes an mqtt.js client write each packet to its socket as one buffer.
 *
 * mqtt.js writes a packet with mqtt-packet's writeToStream: a write() on the socket for every
 * field (a PUBLISH with three user properties is about fifteen), each a queued request on the
 * corked socket and an entry of the writev that follows. A board's start (19 QoS 1 publishes)
 * was ~300 of them. Here the packet is generated into one buffer (mqtt-packet's generate(),
 * the same encoder) and written once; the packets of one tick still leave in one writev (the
 * socket is corked until the next tick, as writeToStream does). Measured with 3,000 sessions
 * each connecting and publishing 19 such messages to Mosquitto: 1.42 ms of CPU a session
 * against 1.49-1.63 ms (issue 15).
 *
 * PUBLISH and PUBACK, most of a board session's packets, are encoded in one allocation
 * (packet-encoder.ts) instead: the same bytes without generate()'s stream of small buffers.
 *
 * `_writePacket` is mqtt.js's (v5) own method, replaced on this client only; the test
 * (whole-packet-writer.test.ts) fails if mqtt.js stops calling it.
 */
export function writeWholePackets(client: MqttClient): void {
  const c = client as unknown as PacketWritingClient;
  if (typeof c._writePacket !== 'function') return; // another mqtt.js: its own writer stays
  let corked: PacketWritingClient['stream'] | null = null;
  const uncork = () => {
    const stream = corked;
    corked = null;
    stream?.uncork();
  };
  c._writePacket = function writePacket(this: PacketWritingClient, packet: Packet, cb?: () => void): void {
    this.emit('packetsend', packet);
    const stream = this.stream;
    let buffer: Buffer;
    try {
      buffer = encodePacket(packet, this.options.protocolVersion ?? 4) ?? generate(packet, this.options);
    } catch (err) {
      // What writeToStream does with a packet it cannot encode: the connection fails with it.
      stream.destroy(err as Error);
      return;
    }
    if (corked !== stream) {
      if (corked) corked.uncork(); // a new stream since (a reconnect): the old one is not left corked
      corked = stream;
      stream.cork();
      process.nextTick(uncork);
    }
    const flushed = stream.write(buffer);
    if (!flushed && cb && cb !== this.noop) stream.once('drain', cb);
    else cb?.();
  };
}
