import { execFile } from 'node:child_process';

/**
 * Clears HUPCL in a serial port's termios with `stty -F <path> -hupcl` (coreutils), so that
 * closing the port no longer drops DTR.
 *
 * Why not serialport's `hupcl: false` alone: serialport (bindings-cpp, unix) only ever *sets*
 * HUPCL when hupcl is true; with false it leaves the bit as the tty has it, and Linux gives a
 * fresh tty HUPCL on. So it must be cleared once, before serialport opens the port (serialport
 * locks it with TIOCEXCL: a second open, as stty's, fails for anyone but root while it is open).
 * The setting stays with the tty (cdc-acm and usb-serial keep termios across opens) until the
 * device is unplugged. One process per port open, never per message.
 */
export function clearHupcl(path: string, timeoutMs = 5000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    execFile('stty', ['-F', path, '-hupcl'], { timeout: timeoutMs }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`stty -F ${path} -hupcl failed: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
  });
}
