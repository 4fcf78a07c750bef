import { homieTopics, type HomieState } from '../homie/homie-topics.ts';

/**
 * When Home Assistant should show a tether entity as available, as data it evaluates itself
 * (Home Assistant's MQTT `availability` list combined by `availability_mode`).
 *
 * Two sources, both kept by the broker: the gateway's Homie `$state` (`ready` while the daemon
 * runs; `lost` is its Last Will, so the broker publishes it when the daemon dies or its network
 * goes; `disconnected` after a clean stop) and the board's own `$state` (`lost` when the
 * keepalive gives up, and also the Last Will of the board's own MQTT session). Combined with
 * `availability_mode: all`, a board's entity is available only while the daemon runs *and* the
 * board is `ready` or `sleeping` (a sleeping board is there: commands are queued and delivered
 * when it wakes). In shared-session mode a board's session has no will and its `$state` stays
 * as last published when the daemon dies: the gateway's entry makes the entity unavailable then.
 *
 * Home Assistant compares a payload with `payload_available`/`payload_not_available` after
 * rendering `value_template` with the payload as `value`; payloads matching neither change
 * nothing, so the template maps every Homie state to one of the two.
 */
export const PAYLOAD_AVAILABLE = 'online';
export const PAYLOAD_NOT_AVAILABLE = 'offline';

/** Board states in which its entities are available. */
export const BOARD_AVAILABLE_STATES: readonly HomieState[] = ['ready', 'sleeping'];
/** Gateway states in which anything it publishes is live. */
export const GATEWAY_AVAILABLE_STATES: readonly HomieState[] = ['ready'];

export interface AvailabilityEntry {
  topic: string;
  payload_available: string;
  payload_not_available: string;
  value_template: string;
}

export interface Availability {
  availability: AvailabilityEntry[];
  availability_mode: 'all';
}

/** A Jinja expression mapping a payload in `states` to `yes`, anything else to `no`. */
export function oneOfTemplate(states: readonly string[], yes: string, no: string): string {
  return `{{ '${yes}' if value in [${states.map((s) => `'${s}'`).join(', ')}] else '${no}' }}`;
}

function entry(topic: string, states: readonly string[]): AvailabilityEntry {
  return {
    topic,
    payload_available: PAYLOAD_AVAILABLE,
    payload_not_available: PAYLOAD_NOT_AVAILABLE,
    value_template: oneOfTemplate(states, PAYLOAD_AVAILABLE, PAYLOAD_NOT_AVAILABLE),
  };
}

/** For what only the daemon knows (a board's connectivity, last seen, reboots): live while the daemon runs. */
export function gatewayAvailability(gatewayId: string): Availability {
  return { availability: [entry(homieTopics.state(gatewayId), GATEWAY_AVAILABLE_STATES)], availability_mode: 'all' };
}

/** For a board's components and its heartbeat: live while the daemon runs and the board is ready or sleeping. */
export function boardAvailability(gatewayId: string, deviceId: string): Availability {
  return {
    availability: [entry(homieTopics.state(gatewayId), GATEWAY_AVAILABLE_STATES), entry(homieTopics.state(deviceId), BOARD_AVAILABLE_STATES)],
    availability_mode: 'all',
  };
}

/** The rule above for known states (for the status line, logs and tests of the rule itself). */
export function boardAvailable(gatewayState: HomieState | undefined, boardState: HomieState | undefined): boolean {
  return gatewayState !== undefined && GATEWAY_AVAILABLE_STATES.includes(gatewayState) && boardState !== undefined && BOARD_AVAILABLE_STATES.includes(boardState);
}
