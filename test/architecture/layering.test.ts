import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// The layering of docs/architecture.md, checked on the sources:
//   shared/protocol  <- host (the product)  <- emulator (test boards)  <- cli
// host/ never imports emulator/, cli/, test/ or bench/; the library entry ('tether') loads
// neither avr8js nor aedes.
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g;

function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(IMPORT)].map((m) => m[1]!);
}

/** Where a relative import lands, as a path from the repository root. */
function target(file: string, spec: string): string {
  return relative(ROOT, resolve(join(ROOT, dirname(file)), spec));
}

const allowed: Record<string, string[]> = {
  'shared/': ['shared/'],
  'host/': ['host/', 'shared/', 'types/'],
  'emulator/': ['emulator/', 'host/', 'shared/', 'types/'],
  'cli/': ['cli/', 'host/', 'emulator/', 'shared/', 'types/'],
};

describe('layering', () => {
  for (const [layer, may] of Object.entries(allowed)) {
    it(`${layer} imports only from ${may.join(', ')}`, () => {
      const files = tsFiles(layer);
      expect(files.length).toBeGreaterThan(0);
      const bad: string[] = [];
      for (const file of files) {
        for (const spec of importsOf(file)) {
          if (!spec.startsWith('.')) continue;
          const to = target(file, spec);
          if (!may.some((prefix) => to.startsWith(prefix))) bad.push(`${file} -> ${to}`);
        }
      }
      expect(bad).toEqual([]);
    });
  }

  it('the checker itself sees a forbidden import (a host file reaching into emulator/)', () => {
    // A made-up import line run through the same functions: proves the rule can fail.
    const spec = '../../emulator/avr/emulated-uno.ts';
    expect(target('host/link/device-link.ts', spec).startsWith('emulator/')).toBe(true);
    expect([...`import { X } from '${spec}';\nconst y = await import('${spec}');`.matchAll(IMPORT)].length).toBe(2);
  });

  it("the library entry ('tether', built) loads neither avr8js nor aedes, nor the emulator part", () => {
    // A child process imports the built package with a resolve hook that reports every module
    // URL, and lists the CommonJS modules it required.
    const hooks = `let port; export function initialize(d) { port = d.port; }
      export async function resolve(s, c, next) { const r = await next(s, c); port.postMessage(r.url); return r; }`;
    const script = `
      import { register, createRequire } from 'node:module';
      import { MessageChannel } from 'node:worker_threads';
      const { port1, port2 } = new MessageChannel();
      const urls = [];
      port1.on('message', (u) => urls.push(u));
      register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}), { data: { port: port2 }, transferList: [port2] });
      const lib = await import('tether');
      await new Promise((r) => setTimeout(r, 200));
      port1.close();
      const cjs = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify({ exports: Object.keys(lib), modules: [...urls, ...cjs] }));
      process.exit(0);`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    const { exports, modules } = JSON.parse(out) as { exports: string[]; modules: string[] };
    expect(exports).toEqual(expect.arrayContaining(['connect', 'TetherIO', 'DeviceLink']));
    expect(modules.some((m) => m.includes('/dist/host/index.js'))).toBe(true);
    expect(modules.some((m) => m.includes('firmata-io'))).toBe(true); // the hook sees packages
    expect(modules.filter((m) => /node_modules\/(avr8js|aedes)\//.test(m) || m.includes('/dist/emulator/'))).toEqual([]);
  });
});
