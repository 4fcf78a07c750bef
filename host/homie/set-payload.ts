import { z } from 'zod';
import type { HomieProperty } from './homie-description.ts';

/** Longest /set payload accepted: Homie values are short; anything longer is a mistake or abuse. */
export const MAX_SET_PAYLOAD_BYTES = 256;

export type SetValue = boolean | number | string;
export type SetResult = { ok: true; value: SetValue } | { ok: false; reason: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The schema that turns a /set payload (text) into a typed value for one property. */
export function setPayloadSchema(property: HomieProperty): z.ZodType<SetValue, string> {
  switch (property.datatype) {
    case 'boolean':
      return z.enum(['true', 'false'], { message: 'expected true or false' }).transform((v) => v === 'true');
    case 'integer': {
      const [min, max] = range(property.format);
      return z
        .string()
        .regex(/^-?\d+$/, 'expected an integer')
        .transform(Number)
        .pipe(z.number().int().min(min, `expected >= ${min}`).max(max, `expected <= ${max}`));
    }
    case 'float': {
      const [min, max] = range(property.format);
      return z
        .string()
        .regex(/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/, 'expected a number')
        .transform(Number)
        .pipe(z.number().finite().min(min, `expected >= ${min}`).max(max, `expected <= ${max}`));
    }
    case 'enum': {
      const values = (property.format ?? '').split(',');
      return z.string().refine((v) => values.includes(v), { message: `expected one of ${values.join(', ')}` });
    }
    default:
      return z.string();
  }
}

/** Validates a raw /set payload: size, UTF-8, then the property's schema. Never throws. */
export function parseSetPayload(property: HomieProperty, payload: Uint8Array): SetResult {
  if (!property.settable) return { ok: false, reason: 'property is not settable' };
  if (payload.length > MAX_SET_PAYLOAD_BYTES) return { ok: false, reason: `payload too long (${payload.length} bytes, at most ${MAX_SET_PAYLOAD_BYTES})` };
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return { ok: false, reason: 'payload is not valid UTF-8' };
  }
  const parsed = setPayloadSchema(property).safeParse(text);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, reason: `${parsed.error.issues[0]?.message ?? 'invalid value'}, got ${JSON.stringify(text.slice(0, 40))}` };
}

function range(format: string | undefined): [number, number] {
  if (!format) return [-Infinity, Infinity];
  const [a, b] = format.split(':');
  return [a === '' || a === undefined ? -Infinity : Number(a), b === '' || b === undefined ? Infinity : Number(b)];
}

