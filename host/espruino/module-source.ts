import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../paths.ts';

/** The keepalive module as it runs on the board (plain ES5, firmware/espruino/). */
export const ESPRUINO_MODULE_PATH = join(PACKAGE_ROOT, 'firmware', 'espruino', 'tether-keepalive.js');

export function readEspruinoModule(path: string = ESPRUINO_MODULE_PATH): string {
  return readFileSync(path, 'utf8');
}
