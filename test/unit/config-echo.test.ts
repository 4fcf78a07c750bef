import { describe, expect, it } from 'vitest';
import { ConfigError, validateConfig } from '../../host/config/load-config.ts';
import { redactUrl } from '../../host/log/redact.ts';

const device = { id: 'a', port: '/dev/ttyACM0' };

function problems(raw: unknown): string[] {
  try {
    validateConfig(raw, 'test');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('the config was valid');
}

describe('config errors quote values safely', () => {
  it('a 5 MB value is cut short in its error line', () => {
    const [line] = problems({ devices: [{ ...device, name: 'x'.repeat(5_000_000) }] });
    expect(line).toMatch(/^devices\[0\]\.name: .*got "x{79}\.\.\. \(5000002 characters\)$/);
    expect(line!.length).toBeLessThan(300);
  });

  it('never echoes a password, whatever is wrong with it', () => {
    const lines = problems({ broker: { username: 'u', password: 424242 }, devices: [device] });
    expect(lines).toEqual(['broker.password: expected string, got ***']);
  });

  it('password and passwordFile are exclusive, and either needs a username', () => {
    expect(problems({ broker: { username: 'u', password: 'p', passwordFile: '/f' }, devices: [device] })).toEqual([
      'broker.passwordFile: give password or passwordFile, not both, got ***',
    ]);
    expect(problems({ broker: { passwordFile: '/f' }, devices: [device] })).toEqual(['broker.passwordFile: passwordFile given without username, got ***']);
  });
});

describe('redactUrl', () => {
  it('hides the password of a URL and nothing else', () => {
    expect(redactUrl('mqtt://alice:s3cret@broker:1883')).toBe('mqtt://alice:***@broker:1883');
    expect(redactUrl('wss://alice:p%40ss@host/mqtt')).toBe('wss://alice:***@host/mqtt');
    expect(redactUrl('mqtt://alice@broker')).toBe('mqtt://alice@broker');
    expect(redactUrl('mqtt://broker:1883/a@b')).toBe('mqtt://broker:1883/a@b');
    expect(redactUrl('mqtts://u:a:b:c@h')).toBe('mqtts://u:***@h');
  });
});
