import { afterEach, describe, expect, it } from 'vitest';
import { EspruinoBoard, type EspruinoBoardOptions } from '../../emulator/espruino/espruino-board.ts';
import { EspruinoReplTransport, replLineForFrame } from '../../host/espruino/espruino-repl-transport.ts';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { readEspruinoModule } from '../../host/espruino/module-source.ts';
import { stripComments } from '../../host/espruino/upload.ts';
import { encodeFrame, frameFromPayload, FrameSplitter } from '../../shared/protocol/index.ts';
import type { DeviceConfig, DeviceMessage, HostMessage, MessageOf } from '../../shared/protocol/messages.ts';

// The real module file (firmware/espruino/tether-keepalive.js) in the Espruino stand-in,
// on fake time; frames decoded with the real codec.

const MODULE = readEspruinoModule();

interface Rig {
  clock: ManualClock;
  board: EspruinoBoard;
  transport: EspruinoReplTransport;
  messages: DeviceMessage[];
  console: string[];
  send(message: HostMessage): void;
  run(ms: number): void;
  take<K extends DeviceMessage['type']>(type: K): MessageOf<K>[];
}

const rigs: Rig[] = [];

async function rig(options: EspruinoBoardOptions = {}): Promise<Rig> {
  const clock = new ManualClock();
  const board = new EspruinoBoard({ clock, program: MODULE, ...options });
  const consoleText: string[] = [];
  const transport = new EspruinoReplTransport(board.createTransport(), { clock, onConsole: (t) => consoleText.push(t) });
  const splitter = new FrameSplitter({ from: 'device' });
  const messages: DeviceMessage[] = [];
  transport.on('data', (bytes) => {
    for (const event of splitter.push(bytes)) {
      if (event.kind === 'message') messages.push(event.message as DeviceMessage);
      else throw new Error(`bad frame from the module: ${event.kind === 'error' ? event.error.message : 'firmata bytes'}`);
    }
  });
  await transport.open();
  const r: Rig = {
    clock,
    board,
    transport,
    messages,
    console: consoleText,
    send: (message) => transport.write(encodeFrame(message)),
    run: (ms) => clock.advance(ms),
    take: (type) => {
      const out = messages.filter((m) => m.type === type) as MessageOf<typeof type>[];
      messages.splice(0, messages.length, ...messages.filter((m) => m.type !== type));
      return out;
    },
  };
  rigs.push(r);
  clock.advance(5);
  return r;
}

afterEach(() => {
  for (const r of rigs.splice(0)) {
    r.board.close();
    void r.transport.close();
    r.clock.advance(10);
    expect(r.clock.pending).toBe(0); // nothing of the board or the framing is left running
  }
});

const SLEEPY: DeviceConfig = { watchdogMs: 2000, policy: 'sleep', hostTimeoutMs: 0, sleepMs: 5000, awakeMs: 300 };

describe('the Espruino keepalive module in the stand-in', () => {
  it('is plain ES5 (no arrow functions, classes, let/const, template strings, spread, regex literals)', () => {
    const code = stripComments(MODULE).replace(/'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"/g, '""');
    expect(code).not.toMatch(/=>/);
    expect(code).not.toMatch(/\b(?:let|const|class)\s/);
    expect(code).not.toMatch(/`/);
    expect(code).not.toMatch(/\.\.\./);
    expect(code).not.toMatch(/[=(,:]\s*\/[^/*]/); // a regular expression literal
  });

  it('computes CRC-8/SMBUS: "123456789" gives 0xF4', async () => {
    const { board } = await rig();
    const check = board.evaluate('tether.crc8([0x31,0x32,0x33,0x34,0x35,0x36,0x37,0x38,0x39])');
    expect(check).toBe(0xf4);
  });

  it('says HELLO on start (boot id from Storage, power-on cause from the RCC flags) and on HELLO_REQUEST', async () => {
    const r = await rig();
    const [boot] = r.take('hello');
    expect(boot).toMatchObject({
      reply: false,
      bootId: 1,
      resetCauses: ['power-on'],
      stateSurvived: false,
      watchdogMs: 2000,
      policy: 'stay',
      stateSize: 32,
      name: 'tether-espruino PICO_R1_3',
      capabilities: { watchdog: true, sleep: true, state: true, pinRestore: false, beats: true },
    });
    r.send({ type: 'hello-request' });
    r.run(10);
    expect(r.take('hello')).toMatchObject([{ reply: true, bootId: 1 }]);
    expect(r.console.join('')).toContain('Espruino'); // the REPL banner went to the console side
    r.board.powerCycle();
    r.run(10);
    expect(r.take('hello')).toMatchObject([{ reply: false, bootId: 2, resetCauses: ['power-on'] }]);
  });

  it('answers PING with PONG: same seq, uptime from getTime(), boot id, lease', async () => {
    const r = await rig();
    r.run(1000);
    r.send({ type: 'ping', seq: 1234, leaseMs: 0 });
    r.run(10);
    r.send({ type: 'ping', seq: 0x3fff, leaseMs: 5000 });
    r.run(10);
    const [a, b] = r.take('pong');
    expect(a).toMatchObject({ seq: 1234, bootId: 1, leaseActive: false, leaseRemainingMs: 0, stateValid: true });
    expect(a!.uptimeMs).toBeGreaterThanOrEqual(1000);
    expect(a!.uptimeMs).toBeLessThan(1100);
    expect(b).toMatchObject({ seq: 0x3fff, leaseActive: true, leaseRemainingMs: 5000 });
  });

  it('keeps state registers across a soft reset (button, watchdog) but not a power cycle', async () => {
    const r = await rig();
    r.take('hello');
    r.send({ type: 'state-write', offset: 30, data: Uint8Array.from([0xaa, 0x55]) });
    r.send({ type: 'state-write', offset: 0, data: Uint8Array.from([1, 2, 3, 200]) });
    r.run(20);
    expect(r.take('state-data').map((m) => [m.offset, [...m.data]])).toEqual([
      [30, [0xaa, 0x55]],
      [0, [1, 2, 3, 200]],
    ]);

    r.board.reset();
    r.run(10);
    expect(r.take('hello')).toMatchObject([{ resetCauses: ['external'], stateSurvived: true }]);
    r.send({ type: 'state-read', offset: 0, length: 4 });
    r.send({ type: 'state-read', offset: 30, length: 2 });
    r.run(20);
    expect(r.take('state-data').map((m) => [...m.data])).toEqual([
      [1, 2, 3, 200],
      [0xaa, 0x55],
    ]);

    r.board.powerCycle();
    r.run(10);
    expect(r.take('hello')).toMatchObject([{ resetCauses: ['power-on'], stateSurvived: false }]);
    r.send({ type: 'state-read', offset: 0, length: 16 });
    r.send({ type: 'state-read', offset: 16, length: 16 });
    r.run(20);
    expect(r.take('state-data').flatMap((m) => [...m.data])).toEqual(new Array(32).fill(0));
  });

  it('rejects out-of-range STATE_WRITE/READ with ERROR and stores nothing', async () => {
    const r = await rig();
    // offset 30 + length 4 > 32: out of range.
    r.transport.write(frameFromPayload(0x04, [30, 4, 1, 0, 2, 0, 3, 0, 4, 0]));
    // A data byte's high septet above 1.
    r.transport.write(frameFromPayload(0x04, [0, 1, 5, 2]));
    r.transport.write(frameFromPayload(0x03, [0, 17]));
    r.run(20);
    expect(r.take('error')).toEqual([
      { type: 'error', code: 'out-of-range', offendingType: 0x04 },
      { type: 'error', code: 'out-of-range', offendingType: 0x04 },
      { type: 'error', code: 'out-of-range', offendingType: 0x03 },
    ]);
    r.send({ type: 'state-read', offset: 0, length: 1 });
    r.run(10);
    expect([...r.take('state-data')[0]!.data]).toEqual([0]);
  });

  it('stores CONFIG in Storage, applies it at once and keeps it through a power cycle', async () => {
    const r = await rig();
    r.take('hello');
    const config: DeviceConfig = { watchdogMs: 4100, policy: 'reset', hostTimeoutMs: 30_000, sleepMs: 60_000, awakeMs: 1500 };
    r.send({ type: 'config-set', config });
    r.run(10);
    // 4100 rounds down to the 4000 ms watchdog step, as on the AVR.
    expect(r.take('config')).toEqual([{ type: 'config', config: { ...config, watchdogMs: 4000 } }]);
    expect(r.board.stats.watchdog).toMatchObject({ enabled: true, auto: false, timeoutMs: 4000 });
    const file = JSON.parse(r.board.storage.get('tether.cfg')!.toString('latin1'));
    expect(file.config).toEqual({ ...config, watchdogMs: 4000, policy: 2 });

    r.board.powerCycle();
    r.run(10);
    expect(r.take('hello')).toMatchObject([{ watchdogMs: 4000, policy: 'reset', hostTimeoutMs: 30_000 }]);
    r.send({ type: 'config-get' });
    r.run(10);
    expect(r.take('config')).toEqual([{ type: 'config', config: { ...config, watchdogMs: 4000 } }]);
  });

  it('kicks the watchdog while healthy; a frozen loop is reset by it', async () => {
    const r = await rig();
    r.run(10_000);
    expect(r.board.stats.resets.watchdog).toBe(0);
    r.take('hello');
    r.send({ type: 'state-write', offset: 5, data: Uint8Array.from([42]) });
    r.run(10);

    r.board.freeze();
    r.run(1900);
    expect(r.board.runMode).toBe('frozen');
    expect(r.board.stats.resets.watchdog).toBe(0);
    r.run(200); // 2000 ms watchdog
    expect(r.board.stats.resets.watchdog).toBe(1);
    expect(r.board.runMode).toBe('running');
    r.run(10);
    expect(r.take('hello')).toMatchObject([{ resetCauses: ['watchdog'], stateSurvived: true, bootId: 2 }]);
    r.send({ type: 'state-read', offset: 5, length: 1 });
    r.run(10);
    expect([...r.take('state-data')[0]!.data]).toEqual([42]);
  });

  it('host-lost policy reset: no PING for host_timeout_ms stops the kicks and the watchdog resets the board', async () => {
    const r = await rig();
    r.send({ type: 'config-set', config: { watchdogMs: 1000, policy: 'reset', hostTimeoutMs: 500, sleepMs: 0, awakeMs: 0 } });
    for (let i = 0; i < 10; i++) {
      r.send({ type: 'ping', seq: i, leaseMs: 0 });
      r.run(200);
    }
    expect(r.board.stats.resets.watchdog).toBe(0);
    r.run(500 + 1000 + 300); // lost after 500 ms, then the 1000 ms watchdog
    expect(r.board.stats.resets.watchdog).toBe(1);
  });

  it('host-lost policy stay: the board keeps running and PONG reports the host was lost', async () => {
    const r = await rig();
    r.send({ type: 'config-set', config: { watchdogMs: 1000, policy: 'stay', hostTimeoutMs: 500, sleepMs: 0, awakeMs: 0 } });
    r.send({ type: 'ping', seq: 1, leaseMs: 0 });
    r.run(3000);
    r.send({ type: 'ping', seq: 2, leaseMs: 0 });
    r.run(10);
    expect(r.board.stats.resets.watchdog).toBe(0);
    expect(r.take('pong').map((p) => p.hostWasLost)).toEqual([false, true]);
  });

  it('sleeps without a lease (SLEEPING, deep sleep), keeps the watchdog fed, wakes on RX with AWAKE; the waking byte is lost', async () => {
    const r = await rig();
    r.send({ type: 'config-set', config: SLEEPY });
    r.run(450);
    expect(r.take('sleeping')).toEqual([{ type: 'sleeping', durationMs: 5000, wakeSources: ['timer', 'serial'] }]);
    expect(r.board.runMode).toBe('sleeping');
    r.run(4000); // twice the watchdog period, asleep
    expect(r.board.stats.resets.watchdog).toBe(0);
    expect(r.board.runMode).toBe('sleeping');

    // The host's wake: one 0x00 byte (an empty REPL line here), then a command after the wake gap.
    r.transport.write(Uint8Array.of(0x00));
    r.send({ type: 'state-read', offset: 0, length: 2 });
    r.run(1);
    expect(r.board.runMode).toBe('running');
    const [awake] = r.take('awake');
    expect(awake).toMatchObject({ wakeCauses: ['serial'] });
    expect(awake!.sleptMs).toBeGreaterThanOrEqual(4000);
    expect(r.board.stats.rxLostAsleep).toBeGreaterThan(0);
    r.run(100);
    expect(r.take('state-data')).toHaveLength(1); // the command after the gap arrived
    expect(r.board.stats.asleepMs).toBeGreaterThanOrEqual(4000);
  });

  it('wakes by its timer after sleep_ms and goes back to sleep after awake_ms', async () => {
    const r = await rig();
    r.send({ type: 'config-set', config: SLEEPY });
    r.run(450);
    r.take('sleeping');
    r.run(5100);
    expect(r.take('awake')).toMatchObject([{ wakeCauses: ['timer'] }]);
    r.run(450);
    expect(r.take('sleeping')).toHaveLength(1);
    expect(r.board.stats.sleeps).toBe(2);
  });

  it('never sleeps while a lease is held; sleeps once it lapses', async () => {
    const r = await rig();
    r.send({ type: 'config-set', config: SLEEPY });
    for (let i = 0; i < 30; i++) {
      r.send({ type: 'ping', seq: i, leaseMs: 400 });
      r.run(200);
    }
    expect(r.board.stats.sleeps).toBe(0);
    expect(r.take('sleeping')).toEqual([]);
    expect(r.take('pong').every((p) => p.leaseActive)).toBe(true);
    r.run(800);
    expect(r.board.stats.sleeps).toBe(1);
  });

  it('answers bad frames with ERROR and survives garbage on the line and in rx()', async () => {
    const r = await rig();
    const ping = [...encodeFrame({ type: 'ping', seq: 7, leaseMs: 0 })];
    const badCrc = [...ping];
    badCrc[badCrc.length - 3] ^= 0x01;
    r.transport.write(Uint8Array.from(badCrc));
    r.transport.write(frameFromPayload(0x02, [1, 0, 0, 0, 0, 0, 0], 2)); // version 2
    r.transport.write(frameFromPayload(0x3e, [])); // unknown type
    r.transport.write(frameFromPayload(0x02, [1, 0])); // PING too short
    r.transport.write(frameFromPayload(0x02, [1, 0, 0, 0, 0, 0, 0x10])); // lease top septet > 0x0F
    r.run(20);
    expect(r.take('error').map((e) => [e.code, e.offendingType])).toEqual([
      ['bad-crc', 0x02],
      ['bad-version', 0x02],
      ['unknown-type', 0x3e],
      ['bad-length', 0x02],
      ['out-of-range', 0x02],
    ]);

    // Garbage straight into the module, and into the REPL.
    const port = r.board.createTransport();
    let seed = 1;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    for (let i = 0; i < 200; i++) {
      const junk = Array.from({ length: 1 + (random() % 80) }, random);
      if (i % 3 === 0) junk.unshift(0xf0, 0x0d); // looks like a frame start
      r.board.evaluate(`tether.rx(${JSON.stringify(Buffer.from(junk).toString('hex'))})`);
      r.board.evaluate(`tether.feed(${JSON.stringify(junk)})`);
    }
    r.board.evaluate('tether.rx(undefined); tether.rx("zz"); tether.feed(null); tether.feed({})');
    await r.transport.close();
    await port.open();
    port.write(Uint8Array.from(Array.from({ length: 300 }, random).map((b) => (b === 0x03 ? 0x20 : b))));
    port.write(Buffer.from('\r\n\x10tether.rx("F0F0F7F7")\n', 'latin1'));
    r.run(200);
    await port.close();

    const t2 = new EspruinoReplTransport(r.board.createTransport(), { clock: r.clock });
    const splitter = new FrameSplitter({ from: 'device' });
    const after: DeviceMessage[] = [];
    t2.on('data', (b) => splitter.push(b).forEach((e) => e.kind === 'message' && after.push(e.message as DeviceMessage)));
    await t2.open();
    t2.write(encodeFrame({ type: 'ping', seq: 99, leaseMs: 0 }));
    r.run(20);
    expect(after.filter((m) => m.type === 'pong')).toMatchObject([{ seq: 99, bootId: 1 }]);
    expect(r.board.stats.resets).toMatchObject({ watchdog: 0, external: 0, software: 0 });
    await t2.close();
  });

  it('carries raw frames on a UART of its own when the console is elsewhere (Serial.on("data"))', async () => {
    const clock = new ManualClock();
    const program = `${MODULE}\ntether.options = { serial: Serial2, rx: A3 };`;
    const board = new EspruinoBoard({ clock, program, line: 'Serial2' });
    const splitter = new FrameSplitter({ from: 'device' });
    const messages: DeviceMessage[] = [];
    const consoleText: string[] = [];
    board.on('console', (t) => consoleText.push(t));
    board.on('data', (b) => splitter.push(b).forEach((e) => e.kind === 'message' && messages.push(e.message as DeviceMessage)));
    clock.advance(5);
    // Raw frames, no REPL text in between.
    board.write(encodeFrame({ type: 'ping', seq: 3, leaseMs: 0 }));
    board.write(encodeFrame({ type: 'config-set', config: SLEEPY }));
    clock.advance(450);
    expect(messages.map((m) => m.type)).toEqual(['hello', 'pong', 'config', 'sleeping']);
    board.write([0x00]); // the wake byte, lost; its start bit wakes the board
    board.write(encodeFrame({ type: 'ping', seq: 4, leaseMs: 0 }));
    clock.advance(10);
    expect(messages.slice(4).map((m) => m.type)).toEqual(['awake', 'pong']);
    expect(consoleText.join('')).toContain('Espruino');
    board.close();
    clock.advance(10);
    expect(clock.pending).toBe(0);
  });

  it('on a build without setDeepSleep (Linux, nRF52, ESP32, ESP8266, RP2040): no sleep capability, policy sleep refused, nothing throws, stop() works', async () => {
    // Policy sleep kept in Storage from an earlier board or module: it must not wedge this one.
    const storage = new Map([['tether.cfg', Buffer.from(JSON.stringify({ v: 1, bootId: 4, config: { ...SLEEPY, policy: 1 } }))]]);
    const r = await rig({ apis: { deepSleep: false }, storage });
    expect(r.board.evaluate('typeof setDeepSleep')).toBe('undefined'); // as on those builds
    const [hello] = r.take('hello');
    expect(hello).toMatchObject({ policy: 'stay', capabilities: { sleep: false, watchdog: true } });
    r.send({ type: 'config-set', config: SLEEPY });
    r.run(10);
    expect(r.take('error')).toEqual([{ type: 'error', code: 'out-of-range', offendingType: 0x05 }]);
    r.run(5000); // awake_ms passed many times over: no sleep, no exception
    expect(r.take('sleeping')).toEqual([]);
    r.send({ type: 'ping', seq: 9, leaseMs: 0 });
    r.run(10);
    expect(r.take('pong')).toMatchObject([{ seq: 9, sleepPending: false }]);
    r.send({ type: 'config-get' });
    r.run(10);
    expect(r.take('config')[0]!.config.policy).toBe('stay');
    expect(r.console.join('')).not.toMatch(/Uncaught|Error/);
    expect(r.board.evaluate('tether.stop(); tether.running()')).toBe(false);
    expect(r.board.stats.resets.watchdog).toBe(0);
  });

  it('on a build without a watchdog: no watchdog capability, a watchdog period refused, HELLO says 0', async () => {
    const r = await rig({ apis: { watchdog: false } });
    expect(r.take('hello')).toMatchObject([{ watchdogMs: 0, capabilities: { watchdog: false, sleep: true } }]);
    r.send({ type: 'config-set', config: { ...SLEEPY, watchdogMs: 1000 } });
    r.run(10);
    expect(r.take('error')).toEqual([{ type: 'error', code: 'out-of-range', offendingType: 0x05 }]);
    r.send({ type: 'config-set', config: { ...SLEEPY, watchdogMs: 0 } });
    r.run(450);
    expect(r.take('sleeping')).toHaveLength(1); // sleeps, loop without kicks
    expect(r.console.join('')).not.toMatch(/Uncaught/);
  });

  it('refuses a watchdog period of 1-249 ms with ERROR out-of-range, as the AVR', async () => {
    const r = await rig();
    r.take('hello');
    for (const watchdogMs of [1, 15, 120, 249]) r.send({ type: 'config-set', config: { ...SLEEPY, policy: 'stay', watchdogMs } });
    r.run(10);
    expect(r.take('error')).toHaveLength(4);
    r.send({ type: 'config-get' });
    r.run(10);
    expect(r.take('config')[0]!.config.watchdogMs).toBe(2000);
  });

  it('writes Storage only when something changes: config once per real change, registers once per new value', async () => {
    const r = await rig();
    const writes = () => r.board.stats.storageWrites;
    expect(writes()['tether.cfg']).toBe(1); // the boot id, at boot
    const config: DeviceConfig = { watchdogMs: 1000, policy: 'stay', hostTimeoutMs: 5000, sleepMs: 8000, awakeMs: 1000 };
    for (let i = 0; i < 5; i++) r.send({ type: 'config-set', config });
    r.run(10);
    expect(r.take('config')).toHaveLength(5); // each answered
    expect(writes()['tether.cfg']).toBe(2); // stored once
    r.send({ type: 'config-set', config: { ...config, watchdogMs: 1999 } }); // rounds to 1000: no change
    r.run(10);
    expect(writes()['tether.cfg']).toBe(2);
    const stateWritesBefore = writes()['tether.st'] ?? 0;
    for (let i = 0; i < 3; i++) r.send({ type: 'state-write', offset: 3, data: Uint8Array.from([7, 8]) });
    r.run(10);
    expect(r.take('state-data')).toHaveLength(3);
    expect(writes()['tether.st']).toBe(stateWritesBefore + 1);
    r.board.reset(); // a soft reset: boot id only
    r.run(10);
    expect(writes()['tether.cfg']).toBe(3);
    expect(writes()['tether.st']).toBe(stateWritesBefore + 1);
  });

  it('sleep_ms 0 means asleep until woken: SLEEPING(0, serial only), no timer wake-up', async () => {
    const r = await rig();
    r.send({ type: 'config-set', config: { ...SLEEPY, sleepMs: 0 } });
    r.run(450);
    expect(r.take('sleeping')).toEqual([{ type: 'sleeping', durationMs: 0, wakeSources: ['serial'] }]);
    r.run(30_000);
    expect(r.take('awake')).toEqual([]);
    expect(r.board.runMode).toBe('sleeping');
    r.transport.write(Uint8Array.of(0x00));
    r.run(10);
    expect(r.take('awake')).toMatchObject([{ wakeCauses: ['serial'] }]);
  });

  it('formats the REPL line the host sends for a frame', () => {
    expect(replLineForFrame([0xf0, 0x0d, 0x01, 0x01, 0x07, 0x00, 0xf7])).toBe('\x10tether.rx("F00D01010700F7")\n');
  });
});

/** A BEATS frame built by hand: the codec refuses an interval of 1-99, the module must too. */
function beatsFrame(seq: number, leaseMs: number, intervalMs: number, forMs: number): Uint8Array {
  const u14 = (v: number) => [v & 0x7f, (v >> 7) & 0x7f];
  const u32 = (v: number) => [v & 0x7f, (v >>> 7) & 0x7f, (v >>> 14) & 0x7f, (v >>> 21) & 0x7f, (v >>> 28) & 0x0f];
  return frameFromPayload(0x07, [...u14(seq), ...u32(leaseMs), ...u14(intervalMs), ...u32(forMs)]);
}

describe('the Espruino module sends its own heartbeat (BEATS / BEAT)', () => {
  /** Advances `ms` in 10 ms steps; each BEAT with the fake time it came out at. */
  function collectBeats(r: Rig, ms: number): Array<{ at: number; beat: MessageOf<'beat'> }> {
    const out: Array<{ at: number; beat: MessageOf<'beat'> }> = [];
    for (let t = 0; t < ms; t += 10) {
      r.run(10);
      for (const beat of r.take('beat')) out.push({ at: r.clock.now(), beat });
    }
    return out;
  }

  it('advertises the beats capability in HELLO (on every build: beats need only setTimeout)', async () => {
    const r = await rig();
    expect(r.take('hello')[0]!.capabilities.beats).toBe(true);
    const bare = await rig({ apis: { deepSleep: false, watchdog: false } });
    expect(bare.take('hello')[0]!.capabilities).toMatchObject({ beats: true, sleep: false, watchdog: false });
  });

  it('answers BEATS(interval 200, for 1000) with PONG, then a BEAT every 200 ms that stops after for_ms', async () => {
    const r = await rig();
    r.take('hello');
    r.run(1000);
    r.send({ type: 'beats', seq: 4321, leaseMs: 0, intervalMs: 200, forMs: 1000 });
    r.run(10);
    const [pong] = r.take('pong');
    expect(pong).toMatchObject({ seq: 4321, bootId: 1, leaseActive: false, stateValid: true });
    const beats = collectBeats(r, 1200);
    expect(beats.length).toBeGreaterThanOrEqual(4);
    expect(beats.length).toBeLessThanOrEqual(5);
    // The board's own clock: the first beat interval_ms after the BEATS (whose PONG went out at
    // once), then one every interval_ms.
    const offsets = beats.map((b) => b.beat.uptimeMs - pong!.uptimeMs);
    offsets.forEach((offset, i) => expect(Math.abs(offset - 200 * (i + 1))).toBeLessThanOrEqual(2));
    for (const { beat } of beats) {
      expect(beat).toMatchObject({ type: 'beat', seq: 4321, bootId: 1, leaseActive: false, hostWasLost: false, stateValid: true, leaseRemainingMs: 0 });
    }
    expect(r.take('pong')).toEqual([]); // beats are BEATs, not PONGs
    expect(collectBeats(r, 3000)).toEqual([]); // none after for_ms
    expect(r.console.join('')).not.toMatch(/Uncaught/);
  });

  it('a BEAT carries the lease as it stands then', async () => {
    const r = await rig();
    r.send({ type: 'beats', seq: 9, leaseMs: 700, intervalMs: 200, forMs: 1000 });
    r.run(5);
    expect(r.take('pong')).toMatchObject([{ seq: 9, leaseActive: true, leaseRemainingMs: 700 }]);
    const beats = collectBeats(r, 1100).map((b) => b.beat);
    expect(beats.map((b) => b.leaseActive)).toEqual([true, true, true, false, false]);
    expect(beats[0]!.leaseRemainingMs).toBeGreaterThanOrEqual(495);
    expect(beats[0]!.leaseRemainingMs).toBeLessThanOrEqual(505);
    expect(beats[4]!.leaseRemainingMs).toBe(0);
  });

  it('refuses interval_ms 1-99 with ERROR out-of-range: no PONG, no beats, the running schedule untouched', async () => {
    const r = await rig();
    r.take('hello');
    r.transport.write(beatsFrame(1, 0, 50, 1000));
    r.transport.write(beatsFrame(2, 0, 99, 1000));
    r.transport.write(beatsFrame(3, 0, 1, 1000));
    r.run(10);
    expect(r.take('error')).toEqual([
      { type: 'error', code: 'out-of-range', offendingType: 0x07 },
      { type: 'error', code: 'out-of-range', offendingType: 0x07 },
      { type: 'error', code: 'out-of-range', offendingType: 0x07 },
    ]);
    expect(r.take('pong')).toEqual([]);
    expect(collectBeats(r, 1500)).toEqual([]);

    // A schedule is running: a refused BEATS leaves it alone (seq, interval and end).
    r.send({ type: 'beats', seq: 10, leaseMs: 0, intervalMs: 200, forMs: 1000 });
    r.run(5);
    r.take('pong');
    const before = collectBeats(r, 300);
    r.transport.write(beatsFrame(11, 5000, 50, 5000));
    const after = collectBeats(r, 2000);
    expect(r.take('error')).toHaveLength(1);
    expect(r.take('pong')).toEqual([]);
    expect([...before, ...after].map((b) => b.beat.seq)).toEqual([10, 10, 10, 10, 10]);
    expect(after.every((b) => !b.beat.leaseActive)).toBe(true); // its lease was not taken either
  });

  it('checks the length and the values like PING: a short BEATS is bad-length, a u32 top septet above 0x0F out-of-range', async () => {
    const r = await rig();
    r.transport.write(frameFromPayload(0x07, [1, 0, 0, 0, 0, 0, 0])); // a PING's payload
    const long = [...beatsFrame(1, 0, 200, 1000)];
    r.transport.write(frameFromPayload(0x07, [...long.slice(4, -3), 0]));
    const bad = [...beatsFrame(1, 0, 200, 1000)].slice(4, -3);
    bad[13] = 0x10; // for_ms top septet
    r.transport.write(frameFromPayload(0x07, bad));
    r.run(10);
    expect(r.take('error').map((e) => [e.code, e.offendingType])).toEqual([
      ['bad-length', 0x07],
      ['bad-length', 0x07],
      ['out-of-range', 0x07],
    ]);
    expect(r.take('pong')).toEqual([]);
    expect(collectBeats(r, 1500)).toEqual([]);
  });

  it('a second BEATS replaces the schedule: its seq, its interval, its end', async () => {
    const r = await rig();
    r.send({ type: 'beats', seq: 1, leaseMs: 0, intervalMs: 200, forMs: 10_000 });
    r.run(5);
    const first = collectBeats(r, 500);
    expect(first.map((b) => b.beat.seq)).toEqual([1, 1]);
    r.send({ type: 'beats', seq: 2, leaseMs: 0, intervalMs: 300, forMs: 1000 });
    r.run(5);
    const [pong] = r.take('pong').filter((p) => p.seq === 2);
    const second = collectBeats(r, 3000);
    expect(second.map((b) => b.beat.seq)).toEqual([2, 2, 2]);
    expect(second.map((b) => b.beat.uptimeMs - pong!.uptimeMs).map((d) => Math.round(d / 10) * 10)).toEqual([300, 600, 900]);
  });

  it('a plain PING leaves the beats running (and is answered with a PONG of its own seq)', async () => {
    const r = await rig();
    r.send({ type: 'beats', seq: 5, leaseMs: 0, intervalMs: 200, forMs: 1000 });
    r.run(5);
    const early = collectBeats(r, 300);
    r.send({ type: 'ping', seq: 6, leaseMs: 0 });
    const late = collectBeats(r, 2000);
    expect(r.take('pong').map((p) => p.seq)).toEqual([5, 6]);
    expect([...early, ...late].map((b) => b.beat.seq)).toEqual([5, 5, 5, 5, 5]);
  });

  it('interval 0 or for 0 stops the beats (still a PING: PONG with the seq)', async () => {
    for (const [intervalMs, forMs] of [
      [0, 5000],
      [200, 0],
    ] as const) {
      const r = await rig();
      r.send({ type: 'beats', seq: 1, leaseMs: 0, intervalMs: 200, forMs: 10_000 });
      r.run(5);
      expect(collectBeats(r, 500)).toHaveLength(2);
      r.send({ type: 'beats', seq: 2, leaseMs: 0, intervalMs, forMs });
      expect(collectBeats(r, 2000)).toEqual([]);
      expect(r.take('pong').map((p) => p.seq)).toEqual([1, 2]);
    }
  });

  it('a beat more than an interval late is not made up: the next follows one interval after it', async () => {
    const r = await rig();
    r.send({ type: 'beats', seq: 3, leaseMs: 0, intervalMs: 200, forMs: 5000 });
    r.run(5);
    const [pong] = r.take('pong');
    collectBeats(r, 300); // the beat at 200
    r.clock.block(700); // the interpreter is busy: the beat due at 400 comes out at ~1000
    const beats = collectBeats(r, 700).map((b) => b.beat.uptimeMs - pong!.uptimeMs);
    // One late beat once the interpreter runs again (those due at 600 and 800 are not made up),
    // then one every interval after it.
    expect(beats).toHaveLength(4);
    expect(beats[0]).toBeGreaterThanOrEqual(1000);
    expect(beats[0]).toBeLessThan(1100);
    for (let i = 1; i < beats.length; i++) expect(Math.abs(beats[i]! - beats[i - 1]! - 200)).toBeLessThanOrEqual(2);
  });

  it('beats stop when the host is lost', async () => {
    const r = await rig();
    r.send({ type: 'config-set', config: { watchdogMs: 1000, policy: 'stay', hostTimeoutMs: 500, sleepMs: 0, awakeMs: 0 } });
    r.send({ type: 'beats', seq: 7, leaseMs: 0, intervalMs: 200, forMs: 5000 });
    r.run(5);
    const beats = collectBeats(r, 3000);
    expect(beats.map((b) => b.beat.seq)).toEqual([7, 7]); // at 200 and 400; lost at 500
    r.send({ type: 'ping', seq: 8, leaseMs: 0 });
    r.run(10);
    expect(r.take('pong').map((p) => [p.seq, p.hostWasLost])).toEqual([
      [7, false],
      [8, true],
    ]);
    expect(collectBeats(r, 1000)).toEqual([]); // a PING does not start them again
  });

  it('beats stop when it goes to sleep (SLEEPING); BEATS does not keep it awake; after AWAKE none until asked again', async () => {
    const r = await rig();
    r.send({ type: 'config-set', config: SLEEPY }); // awake_ms 300
    r.run(5);
    // BEATS every 100 ms, like PINGs: presence, not activity.
    for (let i = 0; i < 2; i++) {
      r.send({ type: 'beats', seq: 20 + i, leaseMs: 0, intervalMs: 100, forMs: 10_000 });
      r.run(100);
    }
    r.run(250);
    expect(r.take('sleeping')).toHaveLength(1);
    expect(r.board.runMode).toBe('sleeping');
    expect(r.take('beat').length).toBeGreaterThanOrEqual(1); // before it slept
    expect(collectBeats(r, 2000)).toEqual([]);
    r.transport.write(Uint8Array.of(0x00)); // the host's wake byte
    r.run(10);
    expect(r.take('awake')).toHaveLength(1);
    expect(collectBeats(r, 250)).toEqual([]);
    expect(r.take('pong').map((p) => p.seq)).toEqual([20, 21]);
  });

  it('tether.stop() with beats running leaves no timer of its own behind', async () => {
    const r = await rig();
    r.run(50);
    const idle = r.clock.pending;
    r.send({ type: 'beats', seq: 1, leaseMs: 0, intervalMs: 200, forMs: 10_000 });
    r.run(250);
    expect(r.take('beat')).toHaveLength(1);
    expect(r.clock.pending).toBe(idle + 1); // the next beat
    expect(r.board.evaluate('tether.stop(); tether.running()')).toBe(false);
    expect(r.clock.pending).toBe(idle - 1); // neither the beat nor the main loop
    expect(collectBeats(r, 1000)).toEqual([]);
  });
});
