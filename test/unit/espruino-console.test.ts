import { describe, expect, it } from 'vitest';
import { EspruinoConsoleLines, espruinoConsoleLogger, isProblemLine, type ConsoleLevel } from '../../host/espruino/espruino-console.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';

function classify(chunks: string[]): Array<[string, ConsoleLevel]> {
  const out: Array<[string, ConsoleLevel]> = [];
  const lines = new EspruinoConsoleLines((line, level) => out.push([line, level]));
  for (const chunk of chunks) lines.push(chunk);
  lines.flush();
  return out;
}

describe('Espruino console text', () => {
  it('an uncaught exception and its context lines are problems; banner, prompt, prints and save() progress are not', () => {
    const text = [
      ' ____                 _ \r\n|  __|___ ___ ___ _ _|_|___ ___ \r\n Espruino 2v29 (c) 2025 G.Williams\r\n>',
      'Uncaught ReferenceError: "setDeepSleep" is not defined\r\n at line 1 col 13\r\nsetDeepSleep(1);\r\n            ^\r\nin function "sleepNow" called from line 1 col 17\r\n',
      '>print("hi")\r\nhi\r\n=undefined\r\n>',
      'Compacting Flash...\r\n/\b-\b\\\b|\bCalculating Size...\r\nWriting..\r\n',
      'ERROR: Out of Memory!\r\nWARNING: Pin B7 is not capable of PWM\r\nNew interpreter error: FIFO_FULL\r\n',
    ];
    // Split at awkward places, as serial reads do.
    const joined = text.join('');
    const chunks = [joined.slice(0, 37), joined.slice(37, 150), joined.slice(150, 151), joined.slice(151)];
    const problems = classify(chunks).filter(([, level]) => level === 'warn').map(([line]) => line);
    expect(problems).toEqual([
      'Uncaught ReferenceError: "setDeepSleep" is not defined',
      ' at line 1 col 13',
      'setDeepSleep(1);',
      '            ^',
      'in function "sleepNow" called from line 1 col 17',
      'ERROR: Out of Memory!',
      'WARNING: Pin B7 is not capable of PWM',
      'New interpreter error: FIFO_FULL',
    ]);
    const chatter = classify(chunks).filter(([, level]) => level === 'debug').map(([line]) => line);
    expect(chatter).toContain('hi');
    expect(chatter).toContain('Calculating Size...');
    expect(chatter.some((l) => /Espruino 2v29/.test(l))).toBe(true);
  });

  it('espruinoConsoleLogger logs problems at warn and the rest at debug', () => {
    const logger = new RecordingLogger();
    const onConsole = espruinoConsoleLogger(logger);
    onConsole('>Uncaught Error: boom\r\n at line 3 col 1\r\n');
    onConsole('>hello\r\n');
    expect(logger.records.filter((r) => r.level === 'warn').map((r) => r.msg)).toEqual([
      'Espruino board reports: Uncaught Error: boom',
      'Espruino board reports:  at line 3 col 1',
    ]);
    expect(logger.records.filter((r) => r.level === 'debug').map((r) => r.obj)).toEqual([{ text: 'hello' }]);
    expect(isProblemLine('>Uncaught InternalError: x')).toBe(true);
    expect(isProblemLine('Writing..')).toBe(false);
  });
});
