import { EventEmitter } from 'node:events';
import type { DeviceLink } from '../link/device-link.ts';
import { LogRateLimiter } from '../log/log-rate-limiter.ts';
import { silentLogger } from '../log/logger.ts';
import { systemClock } from '../time/clock.ts';
import { FirmataSysexCap, type SysexCapStats } from './firmata-sysex-cap.ts';

const capOfLink = new WeakMap<DeviceLink, FirmataSysexCap>();

/** What the LinkPort of `link` kept from firmata.js so far (zeros when it has none). */
export function firmataDrops(link: DeviceLink): SysexCapStats {
  return { ...(capOfLink.get(link)?.stats ?? { droppedBytes: 0, tooLong: 0, cutShort: 0 }) };
}

/**
 * The transport firmata.js expects (write, 'open', 'data'), backed by a DeviceLink: the
 * program's Firmata writes are recorded and queued by the link, and it sees only the
 * device's Firmata bytes, never the keepalive frames. A sysex longer than any board sends
 * never reaches firmata.js, whose buffer would grow with it (FirmataSysexCap): it is dropped,
 * counted (firmataDrops()) and logged, at most 5 lines a minute per port.
 */
export class LinkPort extends EventEmitter {
  constructor(private readonly link: DeviceLink) {
    super();
    const cap = new FirmataSysexCap();
    capOfLink.set(link, cap);
    const log = (link.options.logger ?? silentLogger).child({ port: link.options.target });
    const limiter = new LogRateLimiter(link.options.clock ?? systemClock, { windowMs: 60_000, burst: 5 });
    link.on('firmata', (bytes) => {
      const { out, events } = cap.push(bytes);
      if (out.length > 0) this.emit('data', Buffer.from(out.buffer, out.byteOffset, out.length));
      for (const event of events) {
        const { ok, suppressed } = limiter.allow('sysex');
        if (!ok) continue;
        const totals = { ...cap.stats, suppressedLines: suppressed };
        if (event.kind === 'too-long') {
          log.warn({ limit: event.limit, ...totals }, `a sysex from the board is longer than ${event.limit} bytes: dropping it up to its F7, not passed to firmata.js`);
        } else {
          log.warn(
            { bytes: event.bytes, why: event.why, ...totals },
            event.why === 'too-long'
              ? `dropped a ${event.bytes}-byte sysex (longer than ${cap.maxSysexBytes} bytes); ${cap.stats.droppedBytes} bytes dropped so far`
              : `dropped a ${event.bytes}-byte sysex cut short by a command byte; ${cap.stats.droppedBytes} bytes dropped so far`,
          );
        }
      }
    });
  }

  write(data: Buffer | number[], callback?: (err?: Error | null) => void): boolean {
    this.link.writeFirmata(Uint8Array.from(data));
    callback?.(null);
    return true;
  }
}
