import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  CapabilityBit,
  ErrorCodeValue,
  HelloFlag,
  MAX_BODY,
  MAX_STATE_CHUNK,
  MessageType,
  PolicyValue,
  PongFlag,
  PROTOCOL_VERSION,
  ResetCauseBit,
  STATE_SIZE,
  SYSEX_TETHER,
  WakeBit,
  WATCHDOG_MIN_MS,
  WATCHDOG_STEPS_MS,
} from '../../shared/protocol/index.ts';

// The protocol's numbers are written four times: shared/PROTOCOL.md (the specification), the
// TypeScript codec, the AVR firmware's C++ and the Espruino module's JavaScript. This test reads
// the other three as text and fails when any of them disagrees with the codec.

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const SPEC = readFileSync(root('shared/PROTOCOL.md'), 'utf8');
const FIRMWARE_DIR = root('firmware/avr/tether');
const CPP = readdirSync(FIRMWARE_DIR)
  .filter((f) => /\.(h|cpp|ino)$/.test(f))
  .map((f) => readFileSync(`${FIRMWARE_DIR}/${f}`, 'utf8'))
  .join('\n');
const JS = readFileSync(root('firmware/espruino/tether-keepalive.js'), 'utf8');

function number(text: string): number {
  return text.startsWith('0x') || text.startsWith('0X') ? parseInt(text, 16) : Number(text);
}

/** `#define NAME value` in the firmware sources. */
function cpp(name: string): number | undefined {
  const m = new RegExp(`^#define ${name}\\s+(0[xX][0-9a-fA-F]+|\\d+)\\b`, 'm').exec(CPP);
  return m ? number(m[1]!) : undefined;
}

/** `var NAME = value;` in the Espruino module. */
function js(name: string): number | undefined {
  const m = new RegExp(`\\bvar ${name} = (0[xX][0-9a-fA-F]+|\\d+);`).exec(JS);
  return m ? number(m[1]!) : undefined;
}

/** The message type numbers of the spec's two message tables. */
function specMessageTypes(): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of SPEC.matchAll(/^\| `0x([0-9A-Fa-f]{2})` \| `([A-Z_]+)` \|/gm)) out.set(m[2]!, parseInt(m[1]!, 16));
  return out;
}

/** The values of one row of the spec's bit-field table: label -> number. */
function specField(field: string): Map<string, number> {
  const row = SPEC.split('\n').find((line) => line.startsWith(`| ${field} |`));
  if (!row) throw new Error(`no row ${field} in PROTOCOL.md`);
  const out = new Map<string, number>();
  for (const m of row.matchAll(/`(0x[0-9A-Fa-f]+|\d+)` ([A-Za-z][A-Za-z -]*)/g)) out.set(m[2]!.trim(), number(m[1]!));
  return out;
}

function specLabel(field: string, label: string): number | undefined {
  for (const [key, value] of specField(field)) if (key.startsWith(label)) return value;
  return undefined;
}

describe('protocol numbers agree: PROTOCOL.md, TypeScript codec, AVR firmware, Espruino module', () => {
  it('message types', () => {
    const spec = specMessageTypes();
    expect([...spec.keys()].sort()).toEqual(Object.keys(MessageType).sort());
    for (const [name, value] of Object.entries(MessageType)) {
      expect({ name, spec: spec.get(name), cpp: cpp(`MSG_${name}`), js: js(name) }).toEqual({ name, spec: value, cpp: value, js: value });
    }
  });

  const rows: Array<[string, number, string | undefined, string | undefined, string, string]> = [
    // what, codec value, C++ macro, JS var, spec field row, spec label
    ['reset cause power-on', ResetCauseBit.POWER_ON, 'RESET_CAUSE_POWER_ON', 'CAUSE_POWER_ON', '`reset_cause` (HELLO)', 'power-on'],
    ['reset cause external', ResetCauseBit.EXTERNAL, 'RESET_CAUSE_EXTERNAL', 'CAUSE_EXTERNAL', '`reset_cause` (HELLO)', 'external'],
    ['reset cause brown-out', ResetCauseBit.BROWN_OUT, 'RESET_CAUSE_BROWN_OUT', 'CAUSE_BROWN_OUT', '`reset_cause` (HELLO)', 'brown-out'],
    ['reset cause watchdog', ResetCauseBit.WATCHDOG, 'RESET_CAUSE_WATCHDOG', 'CAUSE_WATCHDOG', '`reset_cause` (HELLO)', 'watchdog'],
    ['HELLO state survived', HelloFlag.STATE_SURVIVED, 'HELLO_FLAG_STATE_SURVIVED', 'HELLO_STATE_SURVIVED', '`flags` (HELLO)', 'state survived'],
    ['HELLO pins restored', HelloFlag.PINS_RESTORED, 'HELLO_FLAG_PINS_RESTORED', undefined, '`flags` (HELLO)', 'pins restored'],
    ['HELLO reply', HelloFlag.REPLY, 'HELLO_FLAG_REPLY', 'HELLO_REPLY', '`flags` (HELLO)', 'reply'],
    ['capability watchdog', CapabilityBit.WATCHDOG, undefined, 'CAP_WATCHDOG', '`capabilities` (HELLO)', 'watchdog'],
    ['capability sleep', CapabilityBit.SLEEP, undefined, 'CAP_SLEEP', '`capabilities` (HELLO)', 'sleep'],
    ['capability state', CapabilityBit.STATE, undefined, 'CAP_STATE', '`capabilities` (HELLO)', 'state registers'],
    ['capability pin restore', CapabilityBit.PIN_RESTORE, undefined, undefined, '`capabilities` (HELLO)', 'pin restore'],
    ['capability beats', CapabilityBit.BEATS, undefined, 'CAP_BEATS', '`capabilities` (HELLO)', 'beats'],
    ['PONG lease active', PongFlag.LEASE_ACTIVE, 'PONG_LEASE_ACTIVE', 'PONG_LEASE', '`flags` (PONG, BEAT)', 'lease active'],
    ['PONG sleep pending', PongFlag.SLEEP_PENDING, 'PONG_SLEEP_PENDING', 'PONG_SLEEP_PENDING', '`flags` (PONG, BEAT)', 'sleep pending'],
    ['PONG state valid', PongFlag.STATE_VALID, 'PONG_STATE_VALID', 'PONG_STATE_VALID', '`flags` (PONG, BEAT)', 'state valid'],
    ['PONG host was lost', PongFlag.HOST_WAS_LOST, 'PONG_HOST_LOST', 'PONG_HOST_LOST', '`flags` (PONG, BEAT)', 'host was lost'],
    ['policy stay', PolicyValue.STAY, 'POLICY_STAY', 'POLICY_STAY', '`policy`', 'stay'],
    ['policy sleep', PolicyValue.SLEEP, 'POLICY_SLEEP', 'POLICY_SLEEP', '`policy`', 'sleep'],
    ['policy reset', PolicyValue.RESET, 'POLICY_RESET', 'POLICY_RESET', '`policy`', 'reset'],
    ['wake timer', WakeBit.TIMER, 'WAKE_TIMER', 'WAKE_TIMER', '`wake_sources`, `wake_cause`', 'timer'],
    ['wake serial', WakeBit.SERIAL, 'WAKE_SERIAL', 'WAKE_SERIAL', '`wake_sources`, `wake_cause`', 'serial'],
    ['wake pin change', WakeBit.PIN, 'WAKE_PIN_CHANGE', undefined, '`wake_sources`, `wake_cause`', 'pin change'],
    ['error bad version', ErrorCodeValue.BAD_VERSION, 'ERR_BAD_VERSION', 'ERR_VERSION', '`ERROR.code`', 'bad version'],
    ['error bad CRC', ErrorCodeValue.BAD_CRC, 'ERR_BAD_CRC', 'ERR_CRC', '`ERROR.code`', 'bad CRC'],
    ['error unknown type', ErrorCodeValue.UNKNOWN_TYPE, 'ERR_UNKNOWN_TYPE', 'ERR_TYPE', '`ERROR.code`', 'unknown type'],
    ['error bad length', ErrorCodeValue.BAD_LENGTH, 'ERR_BAD_LENGTH', 'ERR_LENGTH', '`ERROR.code`', 'bad length'],
    ['error out of range', ErrorCodeValue.OUT_OF_RANGE, 'ERR_OUT_OF_RANGE', 'ERR_RANGE', '`ERROR.code`', 'value out of range'],
  ];
  for (const [what, value, cppName, jsName, field, label] of rows) {
    it(what, () => {
      expect(specLabel(field, label)).toBe(value);
      if (cppName) expect(cpp(cppName)).toBe(value);
      if (jsName) expect(js(jsName)).toBe(value);
    });
  }

  it('the AVR advertises every capability bit; the module computes its own from the codec bits', () => {
    const all = CapabilityBit.WATCHDOG | CapabilityBit.SLEEP | CapabilityBit.STATE | CapabilityBit.PIN_RESTORE | CapabilityBit.BEATS;
    expect(cpp('CAPABILITIES')).toBe(all);
  });

  it('framing, sizes and the watchdog minimum', () => {
    expect([cpp('KEEPALIVE_VERSION'), js('VERSION')]).toEqual([PROTOCOL_VERSION, PROTOCOL_VERSION]);
    expect(SPEC).toMatch(new RegExp(`# tether keepalive protocol, version ${PROTOCOL_VERSION}`));
    expect([cpp('FIRMATA_SYSEX_TETHER'), js('SYSEX_TETHER')]).toEqual([SYSEX_TETHER, SYSEX_TETHER]);
    expect(SPEC).toContain("`SYSEX_TETHER`, tether's sysex id");
    expect([cpp('TETHER_STATE_SIZE'), js('STATE_SIZE')]).toEqual([STATE_SIZE, STATE_SIZE]);
    expect(SPEC).toContain(`\`STATE_SIZE\` = **${STATE_SIZE}**`);
    expect([cpp('FIRMATA_SYSEX_MAX'), js('MAX_BODY')]).toEqual([MAX_BODY, MAX_BODY]);
    expect(SPEC).toContain(`at most **${MAX_BODY} bytes**`);
    expect([cpp('STATE_CHUNK_MAX'), js('MAX_CHUNK')]).toEqual([MAX_STATE_CHUNK, MAX_STATE_CHUNK]);
    expect([cpp('WATCHDOG_MIN_MS'), js('WATCHDOG_MIN_MS')]).toEqual([WATCHDOG_MIN_MS, WATCHDOG_MIN_MS]);
    expect(SPEC).toContain(`**${WATCHDOG_MIN_MS} ms is the minimum**`);
    const jsSteps = /var WATCHDOG_STEPS = \[([^\]]*)\]/.exec(JS)![1]!.split(',').map((v) => Number(v.trim()));
    expect(jsSteps).toEqual([...WATCHDOG_STEPS_MS]);
    expect(SPEC).toContain(`\`watchdog_ms\` is 0 (off) or one of ${WATCHDOG_STEPS_MS.join(', ')}`);
  });

  it('the checker can fail: a made-up disagreement is seen', () => {
    expect(/^#define MSG_PING\s+0x02\b/m.test(CPP)).toBe(true);
    expect(cpp('MSG_NO_SUCH_MESSAGE')).toBeUndefined();
    expect(specLabel('`policy`', 'nap')).toBeUndefined();
  });
});
