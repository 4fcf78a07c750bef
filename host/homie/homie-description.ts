/** Homie 5 property datatypes tether uses. */
export type HomieDatatype = 'boolean' | 'integer' | 'float' | 'string' | 'enum' | 'datetime' | 'duration';

export interface HomieProperty {
  name: string;
  datatype: HomieDatatype;
  /** integer/float: "min:max"; enum: comma-separated values. */
  format?: string;
  settable?: boolean;
  retained?: boolean;
  unit?: string;
}

export interface HomieNode {
  name: string;
  type?: string;
  properties: Record<string, HomieProperty>;
}

export interface HomieDescription {
  homie: '5.0';
  version: number;
  name: string;
  type?: string;
  root?: string;
  parent?: string;
  children?: string[];
  nodes: Record<string, HomieNode>;
}

/**
 * The `$description` document. `version` is derived from the content (a stable hash) so it
 * changes exactly when the description does, as Homie 5 asks.
 */
export function describeDevice(fields: Omit<HomieDescription, 'homie' | 'version'>): HomieDescription {
  const body = { ...fields };
  return { homie: '5.0', version: stableHash(JSON.stringify(body)), ...body };
}

function stableHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h & 0x7fffffff;
}

/** The keepalive facts every tether device exposes, on node `tether`. */
export const keepaliveNode: HomieNode = {
  name: 'Keepalive',
  type: 'tether-keepalive',
  properties: {
    rtt: { name: 'Heartbeat round trip', datatype: 'float', unit: 'ms', retained: true },
    'last-seen': { name: 'Last seen', datatype: 'datetime', retained: true },
    'boot-id': { name: 'Boot id', datatype: 'integer', retained: true },
    'reset-cause': { name: 'Last reset cause', datatype: 'enum', format: 'power-on,external,brown-out,watchdog,unknown', retained: true },
    reboots: { name: 'Reboots seen', datatype: 'integer', retained: true },
    'asleep-time': { name: 'Time asleep', datatype: 'float', unit: 's', retained: true },
  },
};

/**
 * The `tether` node of a board on a tcp:// bridge: the keepalive facts plus its path's (the
 * keep-traffic interval, the idle timeout learned, cuts by cause), as the gateway's `broker` node.
 */
export const bridgeKeepaliveNode: HomieNode = {
  ...keepaliveNode,
  properties: {
    ...keepaliveNode.properties,
    'keep-interval': { name: 'Traffic on the bridge link at least every (learned below the path idle timeout)', datatype: 'float', unit: 's', retained: true },
    'idle-timeout': { name: 'Idle timeout learned for the bridge path (0: none seen)', datatype: 'float', unit: 's', retained: true },
    'drops-closed': { name: 'Bridge links closed by the path', datatype: 'integer', retained: true },
    'drops-half-open': { name: 'Bridge links found half-open', datatype: 'integer', retained: true },
  },
};

/**
 * The gateway's broker path (node `broker` of the gateway device): the PINGREQ interval its
 * sessions use, the idle timeout learned for the path, drops by cause, keepalive bytes.
 */
export const brokerPathNode: HomieNode = {
  name: 'Broker path',
  type: 'tether-broker-path',
  properties: {
    'ping-interval': { name: 'PINGREQ interval', datatype: 'float', unit: 's', retained: true },
    'idle-timeout': { name: 'Idle timeout learned for the path (0: none seen)', datatype: 'float', unit: 's', retained: true },
    'drops-closed': { name: 'Connections closed by the path or the broker', datatype: 'integer', retained: true },
    'drops-half-open': { name: 'Connections found half-open', datatype: 'integer', retained: true },
    'keepalive-bytes-per-day': { name: 'Keepalive bytes a day per idle session', datatype: 'integer', unit: 'B', retained: true },
  },
};
