import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

/**
 * Johnny-Five loads Node's `repl`, and `repl` loads `domain`, which from then on wraps the
 * construction and emit of every EventEmitter in the process (sockets, streams, MQTT clients):
 * a fleet of boards without components paid that on every packet (issue 15). The daemon loads
 * Johnny-Five only for a board with components (GatewayDevice.openLink hands it to them).
 * Checked in a fresh process: vitest's own workers may have loaded either module already.
 */
function loadedAfter(imports: string[], thenImport?: string): { domain: boolean; repl: boolean; johnnyFive: boolean } {
  const urls = imports.map((p) => new URL(p, import.meta.url).href);
  const code = `
    import { createRequire } from 'node:module';
    ${urls.map((u, i) => `await import(${JSON.stringify(u)}); void ${i};`).join('\n')}
    ${thenImport ? `await import(${JSON.stringify(thenImport)});` : ''}
    const loaded = (name) => process.moduleLoadList.includes('NativeModule ' + name);
    const cache = createRequire(import.meta.url).cache;
    const johnnyFive = Object.keys(cache).some((f) => f.includes('/node_modules/johnny-five/'));
    process.stdout.write(JSON.stringify({ domain: loaded('domain'), repl: loaded('repl'), johnnyFive }));`;
  const out = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000, cwd: new URL('../..', import.meta.url).pathname });
  if (out.status !== 0) throw new Error(`the child process failed (${out.status ?? out.signal}): ${out.stderr}`);
  return JSON.parse(out.stdout) as { domain: boolean; repl: boolean; johnnyFive: boolean };
}

describe('Johnny-Five is loaded only for boards with components', () => {
  it('the daemon command, the gateway and every component module load neither Johnny-Five nor node:domain', () => {
    const modules = [
      '../../cli/commands/daemon.ts',
      '../../host/gateway/gateway.ts',
      '../../host/components/create-component.ts',
      '../../host/components/led-component.ts',
      '../../host/components/relay-component.ts',
      '../../host/components/button-component.ts',
      '../../host/components/sensor-component.ts',
    ];
    expect(loadedAfter(modules)).toEqual({ domain: false, repl: false, johnnyFive: false });
  });

  it('importing Johnny-Five itself does load node:domain (why it is kept out)', () => {
    expect(loadedAfter([], 'johnny-five')).toEqual({ domain: true, repl: true, johnnyFive: true });
  });
});
