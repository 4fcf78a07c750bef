import { EventEmitter } from 'node:events';
import type { DeviceLink } from '../link/device-link.ts';

/**
 * The transport firmata.js expects (write, 'open', 'data'), backed by a DeviceLink: the
 * program's Firmata writes are recorded and queued by the link, and it sees only the
 * device's Firmata bytes, never the keepalive frames.
 */
export class LinkPort extends EventEmitter {
  constructor(private readonly link: DeviceLink) {
    super();
    link.on('firmata', (bytes) => this.emit('data', bytes));
  }

  write(data: Buffer | number[], callback?: (err?: Error | null) => void): boolean {
    this.link.writeFirmata(Uint8Array.from(data));
    callback?.(null);
    return true;
  }
}
