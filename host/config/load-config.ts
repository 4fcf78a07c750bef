import { readFile } from 'node:fs/promises';
import { CORE_SCHEMA, load, YAMLException } from 'js-yaml';
import type { z } from 'zod';
import { isSecretKey, REDACTED } from '../log/redact.ts';
import { componentSchema, configSchema, type TetherConfig } from './config-schema.ts';

/** A config that cannot be used; `problems` has one line per mistake, each naming key, value and expectation. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`${source}: ${problems.length === 1 ? problems[0] : `${problems.length} problems:\n  ${problems.join('\n  ')}`}`);
    this.name = 'ConfigError';
  }
}

/** Reads and validates a YAML or JSON config file into typed settings. */
export async function loadConfig(path: string): Promise<TetherConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(path, [code === 'ENOENT' ? 'file not found' : `cannot read: ${(err as Error).message}`]);
  }
  return parseConfig(text, path);
}

export function parseConfig(text: string, source = 'config'): TetherConfig {
  // js-yaml with YAML 1.2's core schema (no YAML 1.1 yes/no booleans, no timestamps, no merge
  // keys); a duplicated key is an error. It reads a 9,900-board config (1.2 MB) in 50-100 ms,
  // where the `yaml` package took 0.85-1.1 s, before any board could start (issue 15).
  let raw: unknown;
  try {
    raw = load(text, { schema: CORE_SCHEMA });
  } catch (err) {
    if (!(err instanceof YAMLException)) throw err;
    const at = err.mark ? ` at line ${err.mark.line + 1}, column ${err.mark.column + 1}` : '';
    throw new ConfigError(source, [`not valid YAML: ${err.reason}${at}`]);
  }
  if (raw === null || raw === undefined) throw new ConfigError(source, ['the file is empty']);
  return validateConfig(raw, source);
}

export function validateConfig(raw: unknown, source = 'config'): TetherConfig {
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new ConfigError(source, result.error.issues.map((issue) => describeIssue(issue, raw)));
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const where = formatPath(issue.path);
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => `${joinPath(where, k)}: unknown key`).join('; ');
  }
  const value = valueAt(raw, issue.path);
  const got = value === undefined ? 'missing' : issue.path.some(isSecretKey) ? `got ${REDACTED}` : `got ${echo(value)}`;
  let expected = issue.message;
  if (issue.code === 'invalid_type') expected = `expected ${issue.expected}`;
  else if (issue.code === 'invalid_union') expected = 'expected ' + describeUnion(issue);
  else if (issue.code === 'invalid_value') expected = `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
  else if (issue.code === 'too_small') expected = `expected ${issue.origin === 'array' ? 'at least' : '>='} ${issue.minimum}${issue.origin === 'array' ? ' item(s)' : ''}${issue.message.startsWith('Too') ? '' : ` (${issue.message})`}`;
  else if (issue.code === 'too_big') expected = `expected ${issue.origin === 'array' ? 'at most' : '<='} ${issue.maximum}`;
  else if (issue.code === 'invalid_format') expected = `expected ${issue.message}`;
  return `${where || '(top level)'}: ${expected}, ${got}`;
}

function describeUnion(issue: z.core.$ZodIssueInvalidUnion): string {
  if (issue.errors.length === 0) {
    // A discriminated union with no matching tag: list the tags it knows.
    const tags = componentSchema.options.map((o) => JSON.stringify(o.shape.type.value));
    return `one of ${tags.join(', ')}`;
  }
  const options = issue.errors.map((errs) => errs.map((e) => (e.code === 'invalid_type' ? e.expected : e.message)).join(' and '));
  return [...new Set(options)].join(' or ');
}

function formatPath(path: PropertyKey[]): string {
  return path.reduce<string>((acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : joinPath(acc, String(key))), '');
}

function joinPath(base: string, key: string): string {
  return base ? `${base}.${key}` : key;
}

function valueAt(raw: unknown, path: PropertyKey[]): unknown {
  let node = raw;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** A value as the error quotes it: JSON, cut short (a 5 MB name must not make a 5 MB line). */
function echo(value: unknown, max = 80): string {
  const json = JSON.stringify(value) ?? String(value);
  return json.length <= max ? json : `${json.slice(0, max)}... (${json.length} characters)`;
}
