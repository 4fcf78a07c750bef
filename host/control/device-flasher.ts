import { BOARDS } from '../flash/boards.ts';
import { FlashError } from '../flash/errors.ts';
import type { FirmwareImage } from '../flash/firmware-image.ts';
import { flashSerialPort, type FlashSerialPortResult } from '../flash/flash-serial-port.ts';
import type { FlashProgress } from '../flash/program-firmware.ts';
import type { GatewayDevice } from '../gateway/gateway-device.ts';
import type { Logger } from '../log/logger.ts';
import { delay, type Clock } from '../time/clock.ts';
import { parseTarget } from '../transport/create-transport.ts';

/** How long the line stays quiet before the flasher opens it: a board's bootloader window (and the emulator's DTR stand-in) wants it. */
export const QUIET_BEFORE_FLASH_MS = 1200;

/**
 * Flashes new firmware while the daemon owns the board: a "flashing" lease (a sleeping
 * board is woken first), the link paused and the port lent to the flasher (`$state init`),
 * then the link resumes: handshake, replay or verify of the recorded state, `ready`.
 */
export class DeviceFlasher {
  private readonly busy = new Set<string>();

  constructor(private readonly fields: { clock: Clock; logger: Logger }) {}

  async flash(device: GatewayDevice, image: FirmwareImage, onProgress?: (p: FlashProgress) => void): Promise<FlashSerialPortResult> {
    const { settings } = device;
    const target = parseTarget(settings.port);
    if (target.kind !== 'serial') {
      throw new FlashError('port-error', `${device.id} is behind a TCP bridge (${settings.port}): flash it on the bridge's host`);
    }
    if (settings.board === 'espruino') {
      throw new FlashError('port-error', `${device.id} is an Espruino board: stop the daemon and run tether flash --board espruino --port ${target.path}`);
    }
    if (this.busy.has(device.id)) throw new FlashError('port-busy', `${device.id} is already being flashed`);
    this.busy.add(device.id);
    const log = this.fields.logger.child({ device: device.id });
    const { link } = device;
    const lease = link.acquireLease('flashing');
    try {
      if (link.state === 'sleeping') await link.ready(5000).catch(() => undefined);
      log.info({ bytes: image.bytes.length, source: image.source }, 'flashing new firmware through the daemon');
      await link.pause('flashing new firmware');
      await delay(this.fields.clock, QUIET_BEFORE_FLASH_MS);
      return await flashSerialPort({ path: target.path, board: BOARDS.uno, image, onProgress });
    } finally {
      link.resume();
      await link.ready(20_000).catch((err: Error) => log.warn({ err: err.message }, 'not ready again after flashing'));
      lease.release();
      this.busy.delete(device.id);
    }
  }
}
