import { EventEmitter } from 'node:events';
import mqttPacket, { type Packet } from 'mqtt-packet';

/** What mqtt.js uses of the parser it makes at each connect. */
interface PacketParser extends EventEmitter {
  parse(buf: Buffer): number;
}
type ParserFactory = (options?: object) => PacketParser;

/** On a client's options: its parser is an AckFirstParser (see useAckFirstParser). */
export const ACK_FIRST_PARSER: unique symbol = Symbol('tether.ackFirstParser');

/** MQTT 3.1.1 §2.2: PUBACK is type 4 with flags 0000; PINGRESP type 13, flags 0000, no body. */
const PUBACK = 0x40;
const PINGRESP = 0xd0;

/**
 * mqtt.js's incoming packet parser for a board session, where nearly every packet is a PUBACK
 * (a board's start is ~19 QoS 1 publishes and their acknowledgements). mqtt-packet's parser
 * handles each through a list of buffers whose every numeric read makes a Buffer view, and a
 * `debug` call (its arguments allocated even when debugging is off) at each step: in the
 * 9,900-board start it allocated 891 MiB of the 4,149 (issue 15). Here a complete PUBACK
 * without properties, and a PINGRESP, is read from the bytes directly into the same packet
 * object mqtt-packet would make; anything else, whole packet by whole packet, goes to an
 * mqtt-packet parser, so every other type and every error is its. After bytes that are not a
 * valid packet header, everything goes to mqtt-packet's parser, which reports the error.
 */
export class AckFirstParser extends EventEmitter {
  /** Packets read here, and handed to mqtt-packet's parser. */
  readonly stats = { direct: 0, general: 0 };
  /** The reads of an unfinished packet, their bytes, and how many it needs (0: not known yet). */
  private rest: Buffer[] = [];
  private restLength = 0;
  private needed = 0;
  private general: PacketParser | null = null;
  /** A malformed header was seen: from then on every byte is mqtt-packet's to parse. */
  private passThrough = false;

  constructor(
    private readonly settings: { protocolVersion?: number },
    private readonly makeGeneral: ParserFactory,
  ) {
    super();
  }

  /** As mqtt-packet's parse(): takes the next bytes of the stream, emits each complete packet. */
  parse(buf: Buffer): number {
    if (this.passThrough) return this.generalParser().parse(buf);
    let data = buf;
    if (this.restLength > 0) {
      this.rest.push(buf);
      this.restLength += buf.length;
      // A large packet in many reads is put together once, when it is all there.
      if (this.restLength < this.needed) return this.restLength;
      data = Buffer.concat(this.rest, this.restLength);
      this.rest = [];
      this.restLength = 0;
    }
    this.needed = 0;
    let pos = 0;
    while (pos < data.length) {
      // §2.2.3 Remaining Length: 1-4 bytes of 7 bits, least significant first.
      let length = 0;
      let multiplier = 1;
      let at = pos + 1;
      let complete = false;
      for (let i = 0; i < 4 && at < data.length; i++) {
        const byte = data[at++]!;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 0x80;
        if ((byte & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (at - pos - 1 >= 4) return this.giveUp(data.subarray(pos)); // a fifth length byte: malformed
        break; // the length continues in the next chunk
      }
      const end = at + length;
      if (end > data.length) {
        this.needed = end - pos;
        break;
      }
      const first = data[pos]!;
      if (first === PUBACK && (length === 2 || (this.settings.protocolVersion === 5 && isBareV5Success(data, at, length)))) {
        this.stats.direct++;
        this.emit('packet', puback(data, at, length, this.settings.protocolVersion === 5));
      } else if (first === PINGRESP && length === 0) {
        this.stats.direct++;
        this.emit('packet', bare('pingresp'));
      } else {
        this.stats.general++;
        this.generalParser().parse(data.subarray(pos, end));
      }
      pos = end;
    }
    // A part packet waits for the rest; copied, so the socket's whole chunk is not kept for it.
    if (pos < data.length) {
      const part = Buffer.from(data.subarray(pos));
      this.rest.push(part);
      this.restLength = part.length;
    }
    return this.restLength;
  }

  private giveUp(data: Buffer): number {
    this.passThrough = true;
    return this.generalParser().parse(data);
  }

  private generalParser(): PacketParser {
    if (this.general === null) {
      const general = this.makeGeneral(this.settings);
      general.on('packet', (packet: Packet) => this.emit('packet', packet));
      general.on('error', (err: Error) => this.emit('error', err));
      this.general = general;
    }
    return this.general;
  }
}

/**
 * MQTT 5 §3.4.2: a PUBACK of 3 or 4 bytes whose Reason Code is 0x00 (Success) and whose
 * properties, if their length is there, are none (what mqtt.js itself sends, where Mosquitto
 * sends 2 bytes).
 */
function isBareV5Success(data: Buffer, at: number, length: number): boolean {
  return (length === 3 || length === 4) && data[at + 2] === 0 && (length === 3 || data[at + 3] === 0);
}

/** The fields, in the order, of mqtt-packet's Packet. */
function bare(cmd: string): Packet & Record<string, unknown> {
  return { cmd, retain: false, qos: 0, dup: false, length: 0, topic: null, payload: null } as unknown as Packet & Record<string, unknown>;
}

function puback(data: Buffer, at: number, length: number, v5: boolean): Packet {
  const packet = bare('puback');
  packet.length = length;
  packet.messageId = (data[at]! << 8) | data[at + 1]!;
  // MQTT 5 §3.4.2.1: no Reason Code (length 2) means 0x00 Success; mqtt-packet says so too.
  if (v5) packet.reasonCode = 0;
  return packet;
}

let installed = false;

/**
 * Makes mqtt.js build an AckFirstParser for each client whose options carry ACK_FIRST_PARSER
 * (mqtt.js asks mqtt-packet's module for a parser at every connect, with the client's
 * options); every other client, in this process, keeps mqtt-packet's. The test
 * (ack-first-parser.test.ts) fails if mqtt.js stops asking the module.
 */
export function useAckFirstParser(): void {
  if (installed) return;
  installed = true;
  const module = mqttPacket as unknown as { parser: ParserFactory };
  const general = module.parser.bind(module);
  module.parser = (options?: object) =>
    options && (options as Record<symbol, unknown>)[ACK_FIRST_PARSER] === true ? new AckFirstParser(options as { protocolVersion?: number }, general) : general(options);
}
