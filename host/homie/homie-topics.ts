/** Homie 5 topic layout: homie/5/<device>/... */
export const HOMIE_PREFIX = 'homie/5';

export type HomieState = 'init' | 'ready' | 'disconnected' | 'sleeping' | 'lost';

export const homieTopics = {
  state: (device: string) => `${HOMIE_PREFIX}/${device}/$state`,
  description: (device: string) => `${HOMIE_PREFIX}/${device}/$description`,
  log: (device: string) => `${HOMIE_PREFIX}/${device}/$log`,
  property: (device: string, node: string, property: string) => `${HOMIE_PREFIX}/${device}/${node}/${property}`,
  set: (device: string, node: string, property: string) => `${HOMIE_PREFIX}/${device}/${node}/${property}/set`,
  /** Subscription for every settable property of a device. */
  allSets: (device: string) => `${HOMIE_PREFIX}/${device}/+/+/set`,
};

/** Splits a /set topic of `device`; null if it is not one. */
export function parseSetTopic(device: string, topic: string): { node: string; property: string } | null {
  const prefix = `${HOMIE_PREFIX}/${device}/`;
  if (!topic.startsWith(prefix) || !topic.endsWith('/set')) return null;
  const parts = topic.slice(prefix.length, -'/set'.length).split('/');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return null;
  return { node: parts[0], property: parts[1] };
}
