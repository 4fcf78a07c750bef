import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SerialPort } from 'serialport';
import five from 'johnny-five';
import firmataIo from 'firmata-io';
import { EmulateProcess } from '../support/emulate-process.ts';
import { waitFor, within } from '../support/wait-for.ts';

// Unmodified Johnny-Five + firmata.js over real serialport on the pty of `tether emulate`.

describe('Johnny-Five on tether emulate', () => {
  let emulator: EmulateProcess;
  let port: SerialPort;
  let board: five.Board;

  beforeAll(async () => {
    emulator = await EmulateProcess.start();
    port = new SerialPort({ path: emulator.ptyPath, baudRate: 57600 });
    const io = new firmataIo.Firmata(port);
    board = new five.Board({ io, repl: false, debug: false, timeout: 20_000 });
    await new Promise<void>((resolve, reject) => {
      board.on('ready', () => resolve());
      board.on('error', reject);
    });
  }, 30_000);

  afterAll(async () => {
    await new Promise<void>((resolve) => (port?.isOpen ? port.close(() => resolve()) : resolve()));
    expect(await emulator?.stop()).toBe(0);
  });

  it('a Led on pin 13 drives PORTB5 on and off', async () => {
    const led = new five.Led({ pin: 13, board });
    const on = emulator.nextEvent((e) => e.event === 'pin' && e.pin === 13 && e.high === true);
    led.on();
    await on;
    const off = emulator.nextEvent((e) => e.event === 'pin' && e.pin === 13 && e.high === false);
    led.off();
    await off;
  });

  it('a Relay on pin 8 switches', async () => {
    const relay = new five.Relay({ pin: 8, board });
    const closed = emulator.nextEvent((e) => e.event === 'pin' && e.pin === 8 && e.high === true);
    relay.close();
    await closed;
    const opened = emulator.nextEvent((e) => e.event === 'pin' && e.pin === 8 && e.high === false);
    relay.open();
    await opened;
  });

  it('a Button on pin 2 reports a press injected on the emulated pin', async () => {
    // The board answers the report request with the pin's level at once: then reporting has started.
    let reporting = false;
    (board.io as unknown as NodeJS.EventEmitter).once('digital-read-2', () => (reporting = true));
    const button = new five.Button({ pin: 2, board });
    await waitFor(() => reporting, { what: 'the first report of pin 2' });
    const pressed = new Promise<void>((resolve) => button.on('press', () => resolve()));
    emulator.command('pin 2 1');
    await within(pressed, { timeoutMs: 5000, what: "the Button's press" });
    const released = new Promise<void>((resolve) => button.on('release', () => resolve()));
    emulator.command('pin 2 0');
    await within(released, { timeoutMs: 5000, what: "the Button's release" });
  });

  it('a Sensor on A0 reports an injected ADC value', async () => {
    const sensor = new five.Sensor({ pin: 'A0', board, freq: 25 });
    emulator.command('analog 0 2.5');
    const value = await new Promise<number>((resolve) => {
      sensor.on('data', function (this: { value: number }) {
        if (Math.abs(this.value - 512) <= 2) resolve(this.value);
      });
    });
    expect(value).toBeGreaterThanOrEqual(510);
    emulator.command('analog 0 1.25');
    const lower = await new Promise<number>((resolve) => {
      sensor.on('data', function (this: { value: number }) {
        if (Math.abs(this.value - 256) <= 2) resolve(this.value);
      });
    });
    expect(lower).toBeLessThanOrEqual(258);
  });
});
