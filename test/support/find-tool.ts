import { accessSync, constants } from 'node:fs';
import path from 'node:path';

// The one place the test helpers look for a system tool (mosquitto, nginx, haproxy, chromium...).

/** Debian puts daemons in sbin, which a normal user's PATH may lack: looked at first. */
const SYSTEM_DIRS = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin'];

/** The executable's path (system dirs, then PATH), or null when it is not installed. */
export function findTool(name: string): string | null {
  const dirs = [...SYSTEM_DIRS, ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean)];
  for (const dir of dirs) {
    try {
      accessSync(path.join(dir, name), constants.X_OK);
      return path.join(dir, name);
    } catch {
      // next
    }
  }
  return null;
}

/**
 * Whether a test needing `tool` runs: installed, yes; missing under CI=true, it runs and fails
 * (the test script installs it); missing elsewhere, it is skipped with a line saying so.
 */
export function toolAvailable(tool: string, apt: string): boolean {
  if (findTool(tool) !== null || process.env.CI === 'true') return true;
  console.warn(`SKIPPED: ${tool} is not installed (apt-get install ${apt}); under CI=true this test fails instead`);
  return false;
}

/**
 * For a prerequisite that is not a tool on PATH (a Python module, root for network namespaces):
 * false with a SKIPPED line here; true under CI=true, so the test runs and fails there.
 */
export function ciMustHave(what: string, apt: string): boolean {
  if (process.env.CI === 'true') return true;
  console.warn(`SKIPPED: ${what} is not available (${apt}); under CI=true this test fails instead`);
  return false;
}

/** The tool's path; throws with the apt-get line when it is missing. */
export function requireTool(tool: string, apt: string, why = 'scripts/test-all.sh installs it'): string {
  const found = findTool(tool);
  if (!found) throw new Error(`${tool} is not installed: run \`apt-get install ${apt}\` (${why})`);
  return found;
}
