import { fileURLToPath } from 'node:url';
import { dirname, join, sep } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
/** The package root, from the sources (host/) or from the build (dist/host/). */
export const PACKAGE_ROOT = here.endsWith(`${sep}dist${sep}host`) ? join(here, '..', '..') : join(here, '..');

/** The firmware image shipped in the repository (rebuilt and checked by CI). */
export const FIRMWARE_HEX_PATH = join(PACKAGE_ROOT, 'firmware', 'avr', 'tether.hex');
