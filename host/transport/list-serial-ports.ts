import { access, readdir, readFile, realpath } from 'node:fs/promises';
import { constants } from 'node:fs';
import { basename, delimiter, dirname, join } from 'node:path';
import { SerialPort } from 'serialport';
import { silentLogger, type Logger } from '../log/logger.ts';

export interface SerialPortInfo {
  /** The device node, e.g. /dev/ttyACM0. */
  path: string;
  manufacturer?: string;
  /** USB vendor id, 4 lowercase hex digits (2341 = Arduino). */
  vendorId?: string;
  productId?: string;
  serialNumber?: string;
  /** The stable /dev/serial/by-id name, when there is one: a better target than ttyACM0, which can change on replug. */
  pnpId?: string;
}

export interface ListSerialPortsOptions {
  logger?: Logger;
  /** For tests: where the device nodes are (default /dev). */
  devRoot?: string;
  /** For tests: where sysfs is (default /sys). */
  sysRoot?: string;
  /** For tests: whether udevadm can be run (default: look for it on PATH). */
  hasUdevadm?: () => Promise<boolean>;
  /** For tests: the udev-based listing (default SerialPort.list). */
  listWithUdev?: () => Promise<Array<Partial<SerialPortInfo> & { path: string }>>;
}

/** Device names scanned when udev is missing. ttyS* only with real hardware behind it (see below). */
const CANDIDATE = /^tty(ACM|USB|AMA|XRUSB|S)\d+$/;

/**
 * The serial ports on this machine. On Linux, serialport lists them by running `udevadm`,
 * which minimal containers lack. Reported to crash the process with an uncaught
 * `spawn udevadm ENOENT`; @serialport/bindings-cpp 13.0.0 rejects instead (checked), but
 * udevadm is looked up on PATH first anyway, so no version of it gets to spawn nothing,
 * and a rejection is caught too. Without udev the ports are found in /dev and /sys directly (ACM, USB, AMA, XRUSB; ttyS only when sysfs says it is not a
 * legacy "platform" placeholder, as pyserial does: PCs expose 4-32 ttyS nodes with no UART).
 * Never rejects: a failing listing yields the fallback, logged at warn.
 */
export async function listSerialPorts(options: ListSerialPortsOptions = {}): Promise<SerialPortInfo[]> {
  const logger = options.logger ?? silentLogger;
  const listWithUdev = options.listWithUdev ?? (() => SerialPort.list());
  const isLinux = process.platform === 'linux' || options.devRoot !== undefined || options.sysRoot !== undefined;
  if (!isLinux) {
    // macOS and Windows list through their own APIs; nothing is spawned.
    try {
      return clean(await listWithUdev());
    } catch (err) {
      logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'serial port listing failed');
      return [];
    }
  }

  const hasUdevadm = options.hasUdevadm ?? udevadmOnPath;
  if (await hasUdevadm()) {
    try {
      return clean(await listWithUdev());
    } catch (err) {
      logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'serial port listing via udev failed; scanning /dev instead');
    }
  } else {
    logger.debug({}, 'udevadm not found; scanning /dev and /sys for serial ports');
  }
  return scanDevices(options.devRoot ?? '/dev', options.sysRoot ?? '/sys');
}

async function udevadmOnPath(): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      await access(join(dir, 'udevadm'), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

async function scanDevices(devRoot: string, sysRoot: string): Promise<SerialPortInfo[]> {
  const names = (await readdir(devRoot).catch(() => [] as string[])).filter((n) => CANDIDATE.test(n));
  const byId = await byIdLinks(devRoot);
  const ports: SerialPortInfo[] = [];
  for (const name of names) {
    const sysDevice = join(sysRoot, 'class', 'tty', name, 'device');
    const subsystem = await realpath(join(sysDevice, 'subsystem')).then(basename, () => null);
    if (name.startsWith('ttyS') && (subsystem === null || subsystem === 'platform')) continue;
    const path = join(devRoot, name);
    const port: SerialPortInfo = { path, ...(await usbInfo(sysDevice)) };
    const id = byId.get(path);
    if (id) port.pnpId = id;
    ports.push(port);
  }
  return ports.sort((a, b) => a.path.localeCompare(b.path, 'en', { numeric: true }));
}

/** /dev/serial/by-id/<name> -> the device it points to, keyed by device path. */
async function byIdLinks(devRoot: string): Promise<Map<string, string>> {
  const dir = join(devRoot, 'serial', 'by-id');
  const map = new Map<string, string>();
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    try {
      const target = await realpath(join(dir, name));
      map.set(join(devRoot, basename(target)), name);
    } catch {
      // dangling link: the device just went away
    }
  }
  return map;
}

/** USB descriptors from sysfs: the tty's device is a USB interface; the USB device (with idVendor) is a parent. */
async function usbInfo(sysDevice: string): Promise<Omit<SerialPortInfo, 'path'>> {
  let dir: string;
  try {
    dir = await realpath(sysDevice);
  } catch {
    return {};
  }
  for (let depth = 0; depth < 4 && dir !== dirname(dir); depth++, dir = dirname(dir)) {
    const vendorId = await readAttr(dir, 'idVendor');
    if (vendorId === undefined) continue;
    const info: Omit<SerialPortInfo, 'path'> = { vendorId };
    const productId = await readAttr(dir, 'idProduct');
    const manufacturer = await readAttr(dir, 'manufacturer');
    const serialNumber = await readAttr(dir, 'serial');
    if (productId !== undefined) info.productId = productId;
    if (manufacturer !== undefined) info.manufacturer = manufacturer;
    if (serialNumber !== undefined) info.serialNumber = serialNumber;
    return info;
  }
  return {};
}

async function readAttr(dir: string, name: string): Promise<string | undefined> {
  try {
    const value = (await readFile(join(dir, name), 'utf8')).trim();
    return value === '' ? undefined : value;
  } catch {
    return undefined;
  }
}

/** serialport's entries carry explicit undefineds and a locationId; keep only what we promise. */
function clean(list: Array<Partial<SerialPortInfo> & { path: string }>): SerialPortInfo[] {
  return list.map((p) => {
    const out: SerialPortInfo = { path: p.path };
    for (const key of ['manufacturer', 'vendorId', 'productId', 'serialNumber', 'pnpId'] as const) {
      const value = p[key];
      if (typeof value === 'string' && value !== '') out[key] = value;
    }
    return out;
  });
}
