import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PtyBridge } from '../avr/pty-bridge.ts';
import { SimulatedDevice, type SimulatedDeviceOptions } from './simulated-device.ts';

/**
 * A protocol-level board behind a pty in a temp folder of its own, as a USB serial board looks
 * to a serial-over-TCP bridge (ser2net) or to tether itself: open `path`.
 */
export class SimulatedDeviceOnPty {
  private constructor(
    readonly device: SimulatedDevice,
    private readonly bridge: PtyBridge,
    private readonly dir: string,
    readonly path: string,
  ) {}

  static async start(options: SimulatedDeviceOptions = {}, openTimeoutMs?: number): Promise<SimulatedDeviceOnPty> {
    const dir = mkdtempSync(join(tmpdir(), 'tether-simulated-'));
    const path = join(dir, 'board');
    const device = new SimulatedDevice(options);
    const bridge = new PtyBridge(path);
    device.on('data', (b) => bridge.write(b));
    bridge.on('data', (b) => device.write(b));
    await bridge.open(openTimeoutMs);
    device.boot();
    return new SimulatedDeviceOnPty(device, bridge, dir, path);
  }

  /** Stops the board, closes the pty and removes its folder. */
  async close(): Promise<void> {
    this.device.close();
    await this.bridge.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
