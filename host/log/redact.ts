/** What stands in for a secret in anything printed. */
export const REDACTED = '***';

/**
 * A URL fit for logs: the password of `scheme://user:password@host` (and any userinfo that
 * does not parse) replaced by `***`. Leaves other text alone.
 */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/?#]*)@/i, (_, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return colon < 0 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:${REDACTED}@`;
  });
}

/** Keys whose values are never echoed (config errors, logs of options). */
export function isSecretKey(key: PropertyKey): boolean {
  return typeof key === 'string' && /pass(word)?|secret|token|^key$/i.test(key);
}
