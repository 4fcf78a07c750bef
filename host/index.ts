// tether as a library.
import { DeviceLink, type DeviceLinkOptions } from './link/device-link.ts';

export { DeviceLink, type DeviceLinkOptions, type DeviceLinkStats } from './link/device-link.ts';
export { TetherIO, type TetherIOOptions } from './tether-io/tether-io.ts';
export type { SessionState, StateChange, RebootInfo } from './session/device-session.ts';
export { PhiAccrualDetector } from './session/phi-accrual-detector.ts';
export { FixedTimeoutDetector } from './session/failure-detector.ts';

/**
 * Connects to a board running tether firmware (or a plain Firmata firmware such as
 * StandardFirmata: the session asks it for Firmata answers itself) and resolves once it is
 * `ready`.
 *
 *   const board = await connect('/dev/ttyACM0');
 *   board.on('state', (c) => console.log(c.from, '->', c.to, c.cause));
 *   const lease = board.acquireLease('dashboard open');
 */
export async function connect(
  target: string,
  options: Omit<DeviceLinkOptions, 'target'> & { readyTimeoutMs?: number } = {},
): Promise<DeviceLink> {
  const link = new DeviceLink({ ...options, target });
  link.start();
  try {
    await link.ready(options.readyTimeoutMs ?? 10_000);
  } catch (err) {
    await link.close();
    throw err;
  }
  return link;
}
