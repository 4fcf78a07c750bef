/**
 * A Transform stream in the style of node-serialport's parsers: pipe serial bytes in, read
 * SplitterEvent objects out ('message', 'error', 'firmata').
 */
import { Transform, type TransformCallback, type TransformOptions } from 'node:stream';
import { FrameSplitter, type FrameSplitterOptions, type SplitterEvent } from './frame-splitter.ts';

export interface KeepaliveFrameParserOptions
  extends FrameSplitterOptions,
    Omit<TransformOptions, 'readableObjectMode' | 'objectMode' | 'transform' | 'flush'> {}

export class KeepaliveFrameParser extends Transform {
  private readonly splitter: FrameSplitter;

  constructor(options: KeepaliveFrameParserOptions = {}) {
    const { from, ...streamOptions } = options;
    super({ ...streamOptions, readableObjectMode: true });
    this.splitter = new FrameSplitter({ from });
  }

  override _transform(chunk: unknown, encoding: BufferEncoding, callback: TransformCallback): void {
    let bytes: Uint8Array;
    if (chunk instanceof Uint8Array) {
      bytes = chunk;
    } else if (typeof chunk === 'string') {
      bytes = Buffer.from(chunk, encoding);
    } else {
      callback(new TypeError('KeepaliveFrameParser expects Buffer or Uint8Array chunks'));
      return;
    }
    this.pushAll(this.splitter.push(bytes));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.pushAll(this.splitter.flush());
    callback();
  }

  private pushAll(events: SplitterEvent[]): void {
    for (const event of events) this.push(event);
  }
}

export type { SplitterEvent };
