import { fileURLToPath } from 'node:url';

/** The firmware image shipped in the repository (rebuilt and checked by CI). */
export const FIRMWARE_HEX_PATH = fileURLToPath(new URL('../firmware/avr/tether.hex', import.meta.url));
