import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { listSerialPorts } from '../../host/transport/list-serial-ports.ts';

const udevadmInstalled = (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, 'udevadm')));

let root: string;
let dev: string;
let sys: string;

/** A small /dev + /sys: an Arduino on ttyACM0 (with by-id link), a CH340 on ttyUSB0, a real UART on ttyS4, a placeholder ttyS0. */
function buildTree() {
  root = mkdtempSync(join(tmpdir(), 'tether-ports-'));
  dev = join(root, 'dev');
  sys = join(root, 'sys');
  for (const n of ['ttyACM0', 'ttyUSB0', 'ttyS0', 'ttyS4', 'tty0', 'tty1', 'ttyprintk', 'null']) {
    mkdirSync(dev, { recursive: true });
    writeFileSync(join(dev, n), '');
  }
  mkdirSync(join(dev, 'serial', 'by-id'), { recursive: true });
  symlinkSync('../../ttyACM0', join(dev, 'serial', 'by-id', 'usb-Arduino__www.arduino.cc__0043_75833353035351F0E1C1-if00'));
  symlinkSync('../../ttyACM9', join(dev, 'serial', 'by-id', 'usb-gone-if00')); // dangling: unplugged meanwhile

  const usbDev = join(sys, 'devices', 'pci0000:00', 'usb1', '1-1');
  mkdirSync(join(usbDev, '1-1:1.0'), { recursive: true });
  writeFileSync(join(usbDev, 'idVendor'), '2341\n');
  writeFileSync(join(usbDev, 'idProduct'), '0043\n');
  writeFileSync(join(usbDev, 'manufacturer'), 'Arduino (www.arduino.cc)\n');
  writeFileSync(join(usbDev, 'serial'), '75833353035351F0E1C1\n');
  const ch340 = join(sys, 'devices', 'pci0000:00', 'usb1', '1-2');
  mkdirSync(join(ch340, '1-2:1.0', 'ttyUSB0'), { recursive: true });
  writeFileSync(join(ch340, 'idVendor'), '1a86\n');
  writeFileSync(join(ch340, 'idProduct'), '7523\n');

  mkdirSync(join(sys, 'bus', 'platform'), { recursive: true });
  mkdirSync(join(sys, 'bus', 'pnp'), { recursive: true });
  const platformUart = join(sys, 'devices', 'platform', 'serial8250');
  const pnpUart = join(sys, 'devices', 'pnp0', '00:05');
  mkdirSync(platformUart, { recursive: true });
  mkdirSync(pnpUart, { recursive: true });
  symlinkSync(join(sys, 'bus', 'platform'), join(platformUart, 'subsystem'));
  symlinkSync(join(sys, 'bus', 'pnp'), join(pnpUart, 'subsystem'));

  const cls = join(sys, 'class', 'tty');
  for (const n of ['ttyACM0', 'ttyUSB0', 'ttyS0', 'ttyS4', 'tty0']) mkdirSync(join(cls, n), { recursive: true });
  symlinkSync(join(usbDev, '1-1:1.0'), join(cls, 'ttyACM0', 'device'));
  symlinkSync(join(ch340, '1-2:1.0', 'ttyUSB0'), join(cls, 'ttyUSB0', 'device'));
  symlinkSync(platformUart, join(cls, 'ttyS0', 'device'));
  symlinkSync(pnpUart, join(cls, 'ttyS4', 'device'));
}

describe('listSerialPorts', () => {
  beforeEach(buildTree);
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('without udevadm, scans /dev and /sys instead of calling serialport (whose spawn would crash the process)', async () => {
    let udevCalls = 0;
    const ports = await listSerialPorts({
      devRoot: dev,
      sysRoot: sys,
      hasUdevadm: async () => false,
      listWithUdev: async () => {
        udevCalls++;
        return [];
      },
    });
    expect(udevCalls).toBe(0);
    expect(ports).toEqual([
      {
        path: join(dev, 'ttyACM0'),
        vendorId: '2341',
        productId: '0043',
        manufacturer: 'Arduino (www.arduino.cc)',
        serialNumber: '75833353035351F0E1C1',
        pnpId: 'usb-Arduino__www.arduino.cc__0043_75833353035351F0E1C1-if00',
      },
      { path: join(dev, 'ttyS4') }, // a real (pnp) UART; the platform placeholder ttyS0 is left out
      { path: join(dev, 'ttyUSB0'), vendorId: '1a86', productId: '7523' },
    ]);
  });

  it('with udevadm, uses the udev listing and keeps only the promised fields', async () => {
    const ports = await listSerialPorts({
      devRoot: dev,
      sysRoot: sys,
      hasUdevadm: async () => true,
      listWithUdev: async () => [
        { path: '/dev/ttyACM0', manufacturer: 'Arduino', vendorId: '2341', productId: '0043', serialNumber: undefined, locationId: 'x' } as never,
      ],
    });
    expect(ports).toEqual([{ path: '/dev/ttyACM0', manufacturer: 'Arduino', vendorId: '2341', productId: '0043' }]);
  });

  it('falls back to the scan, and logs why, when the udev listing fails', async () => {
    const logger = new RecordingLogger();
    const ports = await listSerialPorts({
      devRoot: dev,
      sysRoot: sys,
      logger,
      hasUdevadm: async () => true,
      listWithUdev: async () => {
        throw new Error('udevadm exited with code 1');
      },
    });
    expect(ports.map((p) => p.path)).toEqual([join(dev, 'ttyACM0'), join(dev, 'ttyS4'), join(dev, 'ttyUSB0')]);
    expect(logger.records).toContainEqual(
      expect.objectContaining({ level: 'warn', obj: { err: 'udevadm exited with code 1' } }),
    );
  });

  it('finds ACM/USB ports even without sysfs (and then no ttyS)', async () => {
    const ports = await listSerialPorts({ devRoot: dev, sysRoot: join(root, 'no-sys'), hasUdevadm: async () => false });
    expect(ports.map((p) => p.path)).toEqual([join(dev, 'ttyACM0'), join(dev, 'ttyUSB0')]);
    expect(ports[0]!.pnpId).toMatch(/^usb-Arduino/);
  });

  it.skipIf(udevadmInstalled)('falls back when the real SerialPort.list() fails because udevadm is missing (spawn ENOENT)', async () => {
    const logger = new RecordingLogger();
    // Pretend udevadm is there, so the real serialport listing runs and fails.
    const ports = await listSerialPorts({ devRoot: dev, sysRoot: sys, logger, hasUdevadm: async () => true });
    expect(ports.map((p) => p.path)).toEqual([join(dev, 'ttyACM0'), join(dev, 'ttyS4'), join(dev, 'ttyUSB0')]);
    expect(logger.records).toContainEqual(expect.objectContaining({ level: 'warn', obj: { err: expect.stringMatching(/udevadm/) } }));
  });

  it('on this machine, with the real defaults, resolves (never crashes or rejects)', async () => {
    const ports = await listSerialPorts();
    expect(Array.isArray(ports)).toBe(true);
    for (const p of ports) expect(p.path).toMatch(/^\/dev\//);
  });
});
