import type { Packet } from 'mqtt-packet';

/**
 * One-buffer encoders for the packets a board session sends most: PUBLISH (with at most the
 * MQTT 5 User Properties every publish of a held board carries) and a successful PUBACK.
 * Byte for byte what mqtt-packet's generate() makes of the same packet (packet-encoder.test.ts
 * compares them), in one allocation: generate() writes each field into an accumulating stream
 * and concatenates (~12 writes and their buffers per PUBLISH with three user properties), and
 * its `debug` calls allocate their arguments even when debugging is off. Anything else returns
 * null and goes through generate() (whole-packet-writer.ts).
 */

/** A User Properties block (identifier and string pairs), made once per frozen properties object. */
const userPropertyBytes = new WeakMap<object, Buffer>();

/** MQTT 5 §3.3.2.3.7: User Property, identifier 38 (0x26), a UTF-8 string pair, repeatable. */
const USER_PROPERTY = 0x26;

export function encodePacket(packet: Packet, protocolVersion: number): Buffer | null {
  if (packet.cmd === 'publish') return encodePublish(packet, protocolVersion);
  if (packet.cmd === 'puback') return encodePuback(packet, protocolVersion);
  return null;
}

type PublishFields = { topic: unknown; payload: unknown; qos?: number; retain?: boolean; dup?: boolean; messageId?: number; properties?: unknown };

function encodePublish(packet: PublishFields, protocolVersion: number): Buffer | null {
  const { topic, qos = 0, messageId } = packet;
  const payload = packet.payload ?? '';
  if (typeof topic !== 'string') return null;
  if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return null;
  if (qos !== 0 && qos !== 1 && qos !== 2) return null;
  if (qos > 0 && (typeof messageId !== 'number' || !(messageId >= 0 && messageId <= 0xffff))) return null;
  let props: Buffer | null = null;
  if (protocolVersion === 5) {
    props = propertiesBlock(packet.properties);
    if (!props) return null;
  }
  const topicLength = Buffer.byteLength(topic);
  const payloadLength = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const remaining = 2 + topicLength + (qos > 0 ? 2 : 0) + (props ? props.length : 0) + payloadLength;
  if (remaining > MAX_REMAINING) return null; // generate() says what is wrong with it
  const out = Buffer.allocUnsafe(1 + varIntLength(remaining) + remaining);
  // §3.3.1: type 3, DUP bit 3, QoS bits 2-1, RETAIN bit 0.
  let at = 0;
  out[at++] = 0x30 | (packet.dup ? 0x08 : 0) | (qos << 1) | (packet.retain ? 0x01 : 0);
  at = writeVarInt(out, at, remaining);
  out.writeUInt16BE(topicLength, at);
  at += 2;
  at += out.write(topic, at, 'utf8');
  if (qos > 0) {
    out.writeUInt16BE(messageId!, at);
    at += 2;
  }
  if (props) at += props.copy(out, at);
  if (typeof payload === 'string') out.write(payload, at, 'utf8');
  else payload.copy(out, at);
  return out;
}

/**
 * The properties of a PUBLISH: none (a zero length), or User Properties alone, from a frozen
 * object (an owner's, host/gateway/board-ownership.ts) whose bytes are then made once. null:
 * anything else (generate() encodes it).
 */
function propertiesBlock(properties: unknown): Buffer | null {
  if (properties === undefined || properties === null) return EMPTY_PROPERTIES;
  if (typeof properties !== 'object') return null;
  let user: unknown;
  for (const [name, value] of Object.entries(properties)) {
    if (value === undefined) continue;
    if (name !== 'userProperties') return null;
    user = value;
  }
  if (user === undefined) return EMPTY_PROPERTIES;
  if (typeof user !== 'object' || user === null || !Object.isFrozen(user)) return null;
  const cached = userPropertyBytes.get(user);
  if (cached) return cached;
  const block = userPropertiesBlock(user as Record<string, unknown>);
  if (block) userPropertyBytes.set(user, block);
  return block;
}

/** The User Properties of an object as a PUBLISH's properties (length and pairs); null if a value is not a string. */
export function userPropertiesBlock(user: Record<string, unknown>): Buffer | null {
  const pairs: Buffer[] = [];
  for (const name of Object.getOwnPropertyNames(user)) {
    const values = Array.isArray(user[name]) ? (user[name] as unknown[]) : [user[name]];
    for (const value of values) {
      if (typeof value !== 'string') return null;
      const key = Buffer.from(name, 'utf8');
      const val = Buffer.from(value, 'utf8');
      if (key.length > 0xffff || val.length > 0xffff) return null;
      const pair = Buffer.allocUnsafe(5 + key.length + val.length);
      pair[0] = USER_PROPERTY;
      pair.writeUInt16BE(key.length, 1);
      key.copy(pair, 3);
      pair.writeUInt16BE(val.length, 3 + key.length);
      val.copy(pair, 5 + key.length);
      pairs.push(pair);
    }
  }
  const body = Buffer.concat(pairs);
  // Kept as long as the claim: its own memory, not a slice of Node's shared 8 KiB pool (a
  // slice would keep its whole slab alive, ~8 KiB a board; issue 15, seen as external memory).
  const block = Buffer.allocUnsafeSlow(varIntLength(body.length) + body.length);
  body.copy(block, writeVarInt(block, 0, body.length));
  return block;
}

/** §3.4: a PUBACK with Reason Code 0 (Success) and no properties; MQTT 5 then omits both (§3.4.2.1). */
function encodePuback(packet: { messageId?: number; reasonCode?: number; properties?: unknown }, protocolVersion: number): Buffer | null {
  if (typeof packet.messageId !== 'number' || !(packet.messageId >= 0 && packet.messageId <= 0xffff) || packet.properties !== undefined) return null;
  if (protocolVersion === 5 && packet.reasonCode !== 0) return null;
  const out = Buffer.allocUnsafe(4);
  out[0] = 0x40;
  out[1] = 2;
  out.writeUInt16BE(packet.messageId, 2);
  return out;
}

/** §1.5.5 Variable Byte Integer: at most four bytes. */
const MAX_REMAINING = 268_435_455;
const EMPTY_PROPERTIES = Buffer.from([0]);

function varIntLength(value: number): number {
  return value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4;
}

function writeVarInt(out: Buffer, at: number, value: number): number {
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out[at++] = byte;
  } while (value > 0);
  return at;
}
