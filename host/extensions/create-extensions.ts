import { ControlSocketExtension } from '../control/control-socket-extension.ts';
import type { Gateway } from '../gateway/gateway.ts';
import { HomeAssistantExtension } from '../homeassistant/homeassistant-extension.ts';
import { HomieExtension } from '../homie/homie-extension.ts';
import { SetCommandsExtension } from '../homie/set-commands-extension.ts';
import { MetricsExtension } from '../metrics/metrics-extension.ts';
import { StatusPageExtension } from '../status-page/status-page-extension.ts';
import { SystemdExtension } from '../systemd/systemd-extension.ts';
import type { Extension } from './extension.ts';

/**
 * The extensions the config switches on, in start order (each is stopped in reverse).
 * Optional features load their heavy parts (the metrics server, ...) only in start().
 */
export function createExtensions(gateway: Gateway): Extension[] {
  const { config } = gateway;
  const extensions: Extension[] = [];
  if (config.homie.enabled) extensions.push(new HomieExtension(gateway, { factsRefreshMs: config.homie.factsRefreshSec * 1000 }));
  if (config.commands.enabled) extensions.push(new SetCommandsExtension(gateway));
  if (config.homeassistant.enabled) {
    // Home Assistant's entities read the Homie topics ($state, values): nothing to point at without them.
    if (config.homie.enabled) extensions.push(new HomeAssistantExtension(gateway, config.homeassistant));
    else gateway.log.info({}, 'Home Assistant discovery is off because homie is off (its entities read the Homie topics)');
  }
  if (config.metrics && config.metrics.enabled) extensions.push(new MetricsExtension(gateway, config.metrics));
  if (config.http && config.http.enabled) extensions.push(new StatusPageExtension(gateway, config.http));
  if (config.control.enabled) extensions.push(new ControlSocketExtension(gateway));
  if (config.systemd.enabled) extensions.push(new SystemdExtension(gateway));
  return extensions;
}
