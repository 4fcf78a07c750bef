import type { TetherConfig } from '../config/config-schema.ts';
import type { GatewayDevice } from '../gateway/gateway-device.ts';
import type { Logger } from '../log/logger.ts';
import type { BrokerSession } from '../mqtt/broker-session.ts';
import type { Clock } from '../time/clock.ts';
import { brokerDownBound, HealthMonitor, type HealthMonitorOptions, type HealthSources } from './health-monitor.ts';
import { SdNotify, type NotifySend } from './sd-notify.ts';
import { SystemdWatchdog } from './systemd-watchdog.ts';

/** The parts of a Gateway the watchdog reads (structural, so tests can pass fakes). */
export interface GatewayView {
  readonly config: Pick<TetherConfig, 'broker' | 'devices'>;
  readonly mqtt: Pick<BrokerSession, 'clientId' | 'connected'>;
  readonly devices: ReadonlyArray<Pick<GatewayDevice, 'id' | 'mqtt' | 'link'>>;
  /** Device recoveries in flight (the gateway's DeviceWedgeGuard); none when absent. */
  readonly wedgeGuard?: { readonly recovering: Array<{ id: string; startedAt: number }> } | null;
}

/** Every distinct MQTT session: the gateway's and each board's (one in shared-session mode). */
export function brokerSessions(gateway: GatewayView): Array<Pick<BrokerSession, 'clientId' | 'connected'>> {
  const sessions = new Set<Pick<BrokerSession, 'clientId' | 'connected'>>([gateway.mqtt]);
  for (const device of gateway.devices) sessions.add(device.mqtt);
  return [...sessions];
}

export function gatewayHealthSources(gateway: GatewayView): HealthSources {
  return {
    brokers: () => brokerSessions(gateway).map((s) => ({ name: s.clientId, connected: s.connected })),
    recoveries: () => gateway.wedgeGuard?.recovering ?? [],
  };
}

const STATE_ORDER = ['ready', 'init', 'sleeping', 'lost', 'disconnected'];

/** "3 devices: 2 ready, 1 lost; broker connected" */
export function gatewayStatusLine(gateway: GatewayView): string {
  const counts = new Map<string, number>();
  for (const d of gateway.devices) counts.set(d.link.state, (counts.get(d.link.state) ?? 0) + 1);
  const states = [...counts.keys()].sort((a, b) => rank(a) - rank(b)).map((s) => `${counts.get(s)} ${s}`);
  const n = gateway.devices.length;
  const sessions = brokerSessions(gateway);
  const up = sessions.filter((s) => s.connected).length;
  const broker = up === sessions.length ? 'broker connected' : up === 0 ? 'broker disconnected' : `broker: ${up}/${sessions.length} sessions connected`;
  return `${n} device${n === 1 ? '' : 's'}: ${states.join(', ') || 'none'}; ${broker}`;
}

function rank(state: string): number {
  const i = STATE_ORDER.indexOf(state);
  return i < 0 ? STATE_ORDER.length : i;
}

export interface GatewayWatchdogOptions {
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
  /** Overrides for the health bounds (default: brokerDownBound(config.broker), see HealthMonitor). */
  health?: Omit<HealthMonitorOptions, 'sources' | 'clock'>;
  /** For tests: how datagrams are sent. */
  send?: NotifySend;
}

/**
 * The daemon's systemd integration, or null when not started by systemd (no NOTIFY_SOCKET).
 * Call start() once the gateway is up and stop() first thing on shutdown.
 */
export function createGatewayWatchdog(gateway: GatewayView, logger: Logger, options: GatewayWatchdogOptions = {}): SystemdWatchdog | null {
  const env = options.env ?? process.env;
  if (!env.NOTIFY_SOCKET) return null;
  const notifier = new SdNotify({ env, logger, send: options.send });
  const monitor = new HealthMonitor({
    sources: gatewayHealthSources(gateway),
    clock: options.clock,
    brokerDownBoundMs: brokerDownBound(gateway.config.broker),
    ...options.health,
  });
  logger.info(
    { socket: notifier.socketPath, via: notifier.via, pid: process.pid, brokerDownBoundMs: monitor.brokerDownBoundMs, maxLagMs: monitor.maxLagMs, recoveryTimeoutMs: monitor.recoveryTimeoutMs },
    `systemd: notifying ${notifier.socketPath} via ${notifier.via ?? 'nothing (no way to send found)'}`,
  );
  return new SystemdWatchdog({ notifier, health: monitor, status: () => gatewayStatusLine(gateway), env, clock: options.clock, logger });
}
