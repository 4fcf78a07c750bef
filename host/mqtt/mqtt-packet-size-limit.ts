import { Transform, type TransformCallback } from 'node:stream';

/**
 * Passes an MQTT byte stream through unchanged while reading each packet's fixed header
 * (MQTT 3.1.1 section 2.2: one type byte, then the Remaining Length as a variable byte integer
 * of at most 4 bytes) and fails the stream with an error as soon as a packet announces more
 * than `maxBytes`, before the broker buffers it. A malformed length (a fifth continuation
 * byte) fails it too.
 */
export class MqttPacketSizeLimit extends Transform {
  /** Bytes of the current packet's body still to pass, once its header was read. */
  private remaining = 0;
  private inHeader = false;
  private lengthValue = 0;
  private lengthBytes = 0;

  constructor(private readonly maxBytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - i);
        this.remaining -= take;
        i += take;
        continue;
      }
      if (!this.inHeader) {
        this.inHeader = true; // the type byte
        this.lengthValue = 0;
        this.lengthBytes = 0;
        i++;
        continue;
      }
      const byte = chunk[i++]!;
      this.lengthValue += (byte & 0x7f) * 128 ** this.lengthBytes;
      this.lengthBytes++;
      if (byte & 0x80) {
        if (this.lengthBytes === 4) return done(new Error('malformed MQTT remaining length'));
        continue;
      }
      if (this.lengthValue > this.maxBytes) {
        return done(new Error(`MQTT packet of ${this.lengthValue} bytes refused (at most ${this.maxBytes})`));
      }
      this.inHeader = false;
      this.remaining = this.lengthValue;
    }
    done(null, chunk);
  }
}
