/**
 * Which broker connection failures are the config's fault (they will fail the same way on
 * every retry until a person changes something) and what to change. Everything else
 * (refused, reset, timed out, DNS) is the network's or the broker's and is retried as usual.
 *
 * Messages never contain credentials: they are built from error codes and the broker's
 * host, never from the URL or the options.
 */
export interface ConfigFailure {
  /** 'auth': username/password/ACL; 'tls': certificates; 'endpoint': wrong port or path for the scheme; 'protocol': an MQTT version the broker refuses. */
  kind: 'auth' | 'tls' | 'endpoint' | 'protocol';
  /** A stable key for "the same failure again". */
  key: string;
  /** What went wrong, in words (the broker's or OpenSSL's reason included). */
  cause: string;
  /** What to change. */
  fix: string;
}

/** TLS verification failures (OpenSSL/Node codes) and what to do about each. */
const TLS_CODES: Record<string, (host: string) => [string, string]> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: () => [
    "the broker's certificate is not signed by a CA we trust",
    'set broker.tls.ca to the CA certificate (PEM) that signed the broker certificate',
  ],
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: () => [
    "the CA that issued the broker's certificate is not trusted",
    'set broker.tls.ca to the CA certificate (PEM) that signed the broker certificate',
  ],
  UNABLE_TO_GET_ISSUER_CERT: () => [
    "the broker's certificate chain is incomplete",
    'set broker.tls.ca to the CA (and intermediate) certificates, or fix the chain the broker sends',
  ],
  SELF_SIGNED_CERT_IN_CHAIN: () => [
    "the broker's certificate chain ends in a CA we do not trust",
    'set broker.tls.ca to that CA certificate (PEM)',
  ],
  DEPTH_ZERO_SELF_SIGNED_CERT: () => [
    "the broker's certificate is self-signed and not trusted",
    'set broker.tls.ca to the broker certificate itself, or better, sign it with a CA of your own',
  ],
  CERT_HAS_EXPIRED: () => ["the broker's certificate has expired", 'renew the broker certificate (or check this host clock)'],
  CERT_NOT_YET_VALID: () => ["the broker's certificate is not valid yet", "check this host's clock, or the certificate's start date"],
  ERR_TLS_CERT_ALTNAME_INVALID: (host) => [
    `the broker's certificate does not name the host "${host}"`,
    'use a host name the certificate names in broker.url, or reissue the certificate with this name',
  ],
  CERT_SIGNATURE_FAILURE: () => ["the broker's certificate signature does not verify", 'reissue the broker certificate'],
  ERR_SSL_WRONG_VERSION_NUMBER: () => [
    'the broker port does not speak TLS',
    'use mqtt:// (or ws://) for this port, or the broker\u2019s TLS port with mqtts:// (wss://)',
  ],
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: () => [
    'the broker requires a client certificate',
    'set broker.tls.cert and broker.tls.key',
  ],
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: () => ['the broker rejected our client certificate', 'check broker.tls.cert and broker.tls.key against the CA the broker trusts'],
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: () => ['the broker does not trust the CA of our client certificate', 'use a client certificate signed by a CA the broker trusts (its cafile)'],
};

/** Classifies an error from a connection attempt; null when it is not the config's fault. */
export function classifyBrokerError(err: unknown, url: string): ConfigFailure | null {
  const e = err as (Error & { code?: unknown }) | null;
  if (!e || typeof e !== 'object') return null;
  const message = typeof e.message === 'string' ? e.message : '';
  const code = e.code;
  const host = hostOf(url);
  // CONNACK refusals: MQTT 5 reason codes 134/135, MQTT 3.1.1 return codes 4/5.
  if (code === 134 || code === 4) {
    return {
      kind: 'auth',
      key: 'auth:bad-credentials',
      cause: `the broker refused the username or password (${message || 'Bad User Name or Password'})`,
      fix: 'check broker.username and the password (broker.password, broker.passwordFile or $TETHER_BROKER_PASSWORD) against the broker\u2019s password file',
    };
  }
  if (code === 135 || code === 5) {
    // Mosquitto 2 answers a wrong password with this too, not with 134/4.
    return {
      kind: 'auth',
      key: 'auth:not-authorized',
      cause: `the broker refused the login (${message || 'Not authorized'}): a wrong username or password, or a user it does not allow`,
      fix: 'check broker.username and the password (broker.password, broker.passwordFile or $TETHER_BROKER_PASSWORD) against the broker\u2019s password file, and that its ACL allows this user',
    };
  }
  if (typeof code === 'string' && TLS_CODES[code]) {
    const [cause, fix] = TLS_CODES[code](host);
    return { kind: 'tls', key: `tls:${code}`, cause: `TLS: ${cause} (${code})`, fix };
  }
  // WebSocket upgrade refused with an HTTP status: a wrong path or port behind a proxy.
  const status = /Unexpected server response: (\d{3})/.exec(message);
  if (status && /^4/.test(status[1]!)) {
    return {
      kind: 'endpoint',
      key: `ws:${status[1]}`,
      cause: `the WebSocket upgrade was refused with HTTP ${status[1]}`,
      fix: 'check the path in broker.url (Mosquitto behind a proxy is often at /mqtt) and that the proxy forwards WebSocket upgrades',
    };
  }
  return null;
}

function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return '?';
  }
}

/**
 * Says each config failure once at ERROR for all the sessions that share it (every board's
 * session and the gateway's fail the same way with one wrong password); again only after
 * a connection succeeded in between or the failure changed.
 */
export class ConfigFailureLog {
  private readonly reported = new Set<string>();

  /** True the first time `failure` is seen (the caller logs it at ERROR), false after. */
  firstTime(failure: ConfigFailure): boolean {
    if (this.reported.has(failure.key)) return false;
    this.reported.add(failure.key);
    return true;
  }

  /** A connection succeeded: the next failure is news again. */
  cleared(): void {
    this.reported.clear();
  }
}
