import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../host/config/load-config.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { silentLogger } from '../../host/log/logger.ts';
import { StatusPageExtension } from '../../host/status-page/status-page-extension.ts';

const device = `devices:\n  - id: uno-1\n    port: /dev/ttyACM0\n`;
// The constructor does nothing (no port, no file): it only builds the extensions the config switches on.
const extensionsOf = (text: string) => new Gateway(parseConfig(text), silentLogger, { env: {} }).extensions;

describe('config: http (the status page)', () => {
  it('is off without the section; on with it, on 127.0.0.1:8090 with a 10 s heartbeat', () => {
    expect(parseConfig(device).http).toBeUndefined();
    expect(extensionsOf(device).some((e) => e instanceof StatusPageExtension)).toBe(false);
    expect(parseConfig(`http: {}\n${device}`).http).toEqual({ enabled: true, port: 8090, bind: '127.0.0.1', heartbeatSec: 10 });
    expect(extensionsOf(`http: {}\n${device}`).filter((e) => e instanceof StatusPageExtension)).toHaveLength(1);
    expect(extensionsOf(`http: { enabled: false }\n${device}`).some((e) => e instanceof StatusPageExtension)).toBe(false);
    expect(parseConfig(`http: { port: 0, bind: "::1", heartbeatSec: 2 }\n${device}`).http).toEqual({ enabled: true, port: 0, bind: '::1', heartbeatSec: 2 });
  });

  it('rejects a bad port, an unknown key and a heartbeat of 0', () => {
    for (const [text, problem] of [
      ['http: { port: 70000 }', /^http\.port: /],
      ['http: { host: 0.0.0.0 }', /^http\.host: unknown key/],
      ['http: { heartbeatSec: 0 }', /^http\.heartbeatSec: /],
    ] as const) {
      try {
        parseConfig(`${text}\n${device}`);
        throw new Error(`accepted: ${text}`);
      } catch (err) {
        expect(err, text).toBeInstanceOf(ConfigError);
        expect((err as ConfigError).problems.some((p) => problem.test(p)), `${text}: ${(err as ConfigError).problems.join('; ')}`).toBe(true);
      }
    }
  });
});
