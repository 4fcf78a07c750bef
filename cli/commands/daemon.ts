import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../../host/config/load-config.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import type { GatewayDevice } from '../../host/gateway/gateway-device.ts';
import { createLogger } from '../../host/log/create-logger.ts';
import { redactUrl } from '../../host/log/redact.ts';
import { systemClock } from '../../host/time/clock.ts';
import { QueueLockedError } from '../../host/mqtt/queue-lock.ts';
import type { Command } from '../command.ts';
import { applyDaemonHeapSettings } from '../daemon-heap-settings.ts';
import { HeapSettler } from '../daemon-heap-settler.ts';
import { loadMallocTrim, MallocTrimmer } from '../daemon-malloc-trim.ts';
import { EXIT } from '../usage-error.ts';

const help = `Usage: tether daemon [--config tether.yaml] [--check]

Runs the host daemon: keeps every configured board alive over serial or TCP, and holds one
MQTT session per board (Homie 5 topics, Last Will = lost) plus one for the gateway. With no
broker URL in the config, starts an embedded broker. Logs JSON lines on stdout.

Options:
  -c, --config <file>  the YAML or JSON config (default: ./tether.yaml)
      --check          validate the config (and read the broker's TLS files) and exit
                       (0 valid, ${EXIT.config} invalid)

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT), 1 runtime failure, 2 bad usage, ${EXIT.config} bad config.`;

/** Longest a graceful shutdown may take before the daemon exits anyway. */
const SHUTDOWN_LIMIT_MS = 10_000;

export const daemonCommand: Command = {
  name: 'daemon',
  help,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c', default: 'tether.yaml' },
        check: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
    let config;
    try {
      config = await loadConfig(values.config);
    } catch (err) {
      if (err instanceof ConfigError) {
        console.error(`tether daemon: invalid config ${err.message}`);
        return EXIT.config;
      }
      throw err;
    }
    if (values.check) {
      // The config can be valid and still unusable: TLS files missing, unreadable or wrong.
      const { checkTlsFiles } = await import('../../host/mqtt/check-tls-files.ts');
      const problems = config.broker.tls ? await checkTlsFiles(config.broker.tls) : [];
      if (problems.length > 0) {
        console.error(`tether daemon: invalid config ${values.config}: ${problems.length === 1 ? problems[0] : `${problems.length} problems:\n  ${problems.join('\n  ')}`}`);
        return EXIT.config;
      }
      console.log(`${values.config}: valid (${config.devices.length} device(s), broker ${config.broker.url ? redactUrl(config.broker.url) : 'embedded'})`);
      return EXIT.ok;
    }
    const logger = createLogger(config.log.level);
    applyDaemonHeapSettings(); // RSS near the live heap with thousands of boards (daemon-heap-settings.ts)
    let gateway: Gateway;
    try {
      gateway = await Gateway.start(config, logger);
    } catch (err) {
      // One daemon per queue directory: the second says who holds it, in one line.
      if (!(err instanceof QueueLockedError)) throw err;
      console.error(`tether daemon: ${err.message}`);
      return EXIT.failure;
    }
    // The C heap's free memory back to the kernel now and then (daemon-malloc-trim.ts).
    const mallocTrim = loadMallocTrim();
    const trimmer = mallocTrim.trim ? new MallocTrimmer({ trim: mallocTrim.trim, clock: systemClock, logger }) : null;
    if (trimmer) trimmer.start();
    else logger.debug({ err: mallocTrim.error }, 'malloc_trim unavailable: free C heap memory stays with the process');
    // The start-up's fragmented V8 heap handed back once the boards' sessions are up (daemon-heap-settler.ts).
    const settler = new HeapSettler({ clock: systemClock, logger });
    const onBrokerUp = (device: GatewayDevice | null) => {
      if (device) settler.sessionUp();
    };
    gateway.events.on('brokerUp', onBrokerUp);
    return await new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        trimmer?.stop();
        gateway.events.off('brokerUp', onBrokerUp);
        settler.stop();
        logger.info({ signal }, `${signal}: shutting down`);
        const limit = setTimeout(() => {
          logger.error({ limitMs: SHUTDOWN_LIMIT_MS }, 'shutdown took too long: exiting anyway');
          resolve(EXIT.failure);
        }, SHUTDOWN_LIMIT_MS);
        limit.unref();
        gateway
          .stop()
          .then(
            () => {
              clearTimeout(limit);
              resolve(EXIT.ok);
            },
            (err: Error) => {
              logger.error({ err: err.message }, 'shutdown failed');
              resolve(EXIT.failure);
            },
          );
      };
      // SIGHUP: rotated TLS certificates are read again (the boards' links stay up).
      process.on('SIGHUP', () => gateway.reloadTls());
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
  },
};
