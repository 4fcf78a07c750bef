import { parse } from 'node:url';

/** Where mqtt.connect() goes, as the option fields it would take from the URL. */
const PLAIN = ['mqtt', 'mqtts', 'tcp', 'ssl'] as const;

export interface MqttConnectFields {
  protocol: (typeof PLAIN)[number];
  host: string;
  port?: number;
  /** user:password from the URL; mqtt.js makes username and password of it (they win over the options'). */
  auth?: string;
}

/**
 * The broker URL as the fields mqtt.connect() takes from it, for the URLs whose fields are all it
 * uses: mqtt://, mqtts://, tcp://, ssl:// without a query (null for the others: ws://,
 * wss://, a query, unix sockets; those keep going to mqtt.connect() as a URL).
 *
 * Why: from a URL, mqtt.js parses it into the options (a `query` object, a `path` it deletes
 * again), and that delete puts the client's options object, which it keeps for the client's
 * life, into dictionary mode: about 1.5 KiB of live heap per board against about 0.3 KiB for the
 * same options with the fields given (bench/mqtt-session-heap.bench.ts). Parsed the way mqtt.js
 * parses it (url.parse), so host, port and credentials come out the same.
 */
export function mqttConnectTarget(url: string): MqttConnectFields | null {
  const parsed = parse(url, false);
  const protocol = PLAIN.find((p) => parsed.protocol === `${p}:`);
  if (!protocol) return null;
  if (parsed.search || !parsed.hostname) return null;
  const fields: MqttConnectFields = { protocol, host: parsed.hostname };
  if (parsed.port != null) fields.port = Number(parsed.port);
  if (parsed.auth) fields.auth = parsed.auth;
  return fields;
}
