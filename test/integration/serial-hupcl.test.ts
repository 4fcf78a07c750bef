import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../host/config/load-config.ts';
import { SerialTransport } from '../../host/transport/serial-transport.ts';
import { DaemonProcess } from '../support/daemon-process.ts';

// `hupcl: false` keeps DTR up when the port closes, so a reopen (a reconnect, a daemon
// restart) does not reset an Uno. A pty has no DTR line, but it has the termios flag the
// kernel acts on when a real port closes (HUPCL: lower DTR/RTS on the last close), and that
// is what is checked here, with stty, on a socat pty pair. Real USB serial hardware was not
// available to watch DTR itself.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hupclOf = (path: string) => (/(^|\s)-hupcl(\s|$)/.test(execFileSync('stty', ['-F', path, '-a']).toString()) ? 'off' : 'on');

describe('hupcl: false (keep DTR up across close and reopen)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-hupcl-'));
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  let socat: ChildProcess;

  beforeAll(async () => {
    socat = spawn('socat', [`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !(existsSync(a) && existsSync(b)); i++) await sleep(20);
  });

  afterAll(() => {
    socat?.kill();
  });

  it('SerialTransport clears HUPCL before opening (serialport alone would leave it on), and the default keeps it', async () => {
    execFileSync('stty', ['-F', a, 'hupcl']);
    expect(hupclOf(a)).toBe('on'); // as a fresh tty has it

    // serialport's own hupcl: false only refrains from setting the flag: it stays on.
    const plain = new SerialPort({ path: a, baudRate: 57600, autoOpen: false, hupcl: false });
    await new Promise<void>((resolve, reject) => plain.open((err) => (err ? reject(err) : resolve())));
    await new Promise<void>((resolve) => plain.close(() => resolve()));
    expect(hupclOf(a)).toBe('on');

    const keep = new SerialTransport(a, { hupcl: false, presenceCheckMs: 0 });
    await keep.open();
    await keep.close();
    expect(hupclOf(a)).toBe('off');

    const standard = new SerialTransport(a, { presenceCheckMs: 0 });
    await standard.open();
    await standard.close();
    expect(hupclOf(a)).toBe('on');
  });

  it('the daemon opens a device configured with hupcl: false that way; hupcl: false on a tcp:// device is a config error', async () => {
    execFileSync('stty', ['-F', a, 'hupcl']);
    const daemon = new DaemonProcess({
      gateway: { id: 'gw' },
      broker: { embeddedPort: 0 },
      queue: { dir: join(dir, 'queue') },
      devices: [{ id: 'uno', port: a, hupcl: false, keepalive: { intervalMs: 200, misses: 3 } }],
    });
    daemon.start();
    try {
      await daemon.waitForLog((l) => /^gateway gw started/.test(l.msg ?? ''));
      await daemon.waitForLog((l) => /^device lost \(no answer since the link came up\)/.test(l.msg ?? ''), 10_000); // the port was open
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    expect(hupclOf(a)).toBe('off');
    expect(() => validateConfig({ devices: [{ id: 'x', port: 'tcp://127.0.0.1:2000', hupcl: false }] })).toThrow(/hupcl applies to serial ports only/);
  });
});
