import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../host/config/load-config.ts';
import { BoardOnTcp } from '../../emulator/avr/board-on-tcp.ts';
import { Gateway } from '../../host/gateway/gateway.ts';
import { StatusPageExtension } from '../../host/status-page/status-page-extension.ts';
import { redactUrl } from '../../host/log/redact.ts';
import { createLogger } from '../../host/log/create-logger.ts';
import { FIRMWARE_HEX_PATH } from '../../host/paths.ts';
import type { StateChange } from '../../host/session/device-session.ts';
import type { Command } from '../command.ts';
import { parseDuration } from '../duration.ts';
import { EXIT, UsageError } from '../usage-error.ts';

const DEVICE_ID = 'demo-uno';

const help = `Usage: tether demo [--for <duration>] [--mqtt-port <port>] [--http-port <port>] [--broker <url>]

Everything on embedded defaults, no hardware needed: an emulated Arduino Uno running the real
tether firmware, served on a loopback TCP port as ser2net would serve a real board (no pty,
no socat), the embedded MQTT broker, and the daemon keeping the board alive and on MQTT.
Shows a live status line for the board and serves the status page (printed URL). Needs
nothing but Node.

Options:
  --for <duration>    exit by itself after this long (e.g. 15s, 2m); default: until Ctrl-C
  --mqtt-port <port>  port of the embedded broker (default 1883)
  --http-port <port>  port of the status page on 127.0.0.1 (default 8090; 0: any free port)
  --broker <url>      use this broker instead of the embedded one (mqtt://host:port)`;

export const demoCommand: Command = {
  name: 'demo',
  help,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        for: { type: 'string' },
        'mqtt-port': { type: 'string', default: '1883' },
        'http-port': { type: 'string', default: '8090' },
        broker: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    });
    const forMs = values.for === undefined ? null : parseDuration(values.for, '--for');
    const mqttPort = Number(values['mqtt-port']);
    if (!Number.isInteger(mqttPort) || mqttPort < 0 || mqttPort > 65535) throw new UsageError(`--mqtt-port must be a port number, not '${values['mqtt-port']}'`);
    const httpPort = Number(values['http-port']);
    if (!Number.isInteger(httpPort) || httpPort < 0 || httpPort > 65535) throw new UsageError(`--http-port must be a port number, not '${values['http-port']}'`);

    const dir = mkdtempSync(join(tmpdir(), 'tether-demo-'));
    let board: BoardOnTcp;
    try {
      board = await BoardOnTcp.start({ hexPath: FIRMWARE_HEX_PATH });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const config = validateConfig(
      {
        gateway: { id: 'demo-gateway', name: 'tether demo' },
        broker: values.broker ? { url: values.broker } : { embeddedPort: mqttPort },
        queue: { dir: join(dir, 'queue') },
        http: { port: httpPort },
        devices: [
          {
            id: DEVICE_ID,
            name: 'Emulated Uno',
            port: board.url,
            components: [
              { type: 'led', id: 'status', pin: 13 },
              { type: 'button', id: 'button', pin: 2 },
              { type: 'sensor', id: 'light', pin: 'A0', freq: 500, threshold: 8 },
            ],
          },
        ],
      },
      'demo config',
    );
    const logger = createLogger('warn');
    let gateway: Gateway;
    try {
      gateway = await Gateway.start(config, logger);
    } catch (err) {
      await board.close();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const url = new URL(gateway.brokerUrl);
    const host = url.hostname;
    const port = url.port || '1883';
    console.log(`tether demo: an emulated Uno (real firmware) served at ${board.url}, ${gateway.embedded ? 'the embedded broker' : 'the broker'} at ${redactUrl(gateway.brokerUrl)}

Status page: ${gateway.extension(StatusPageExtension)?.url}
Watch it:    mosquitto_sub -h ${host} -p ${port} -t 'homie/5/#' -v
Switch the LED:  mosquitto_pub -h ${host} -p ${port} -q 1 -t homie/5/${DEVICE_ID}/status/on/set -m true
The daemon holds the board's port (one client at a time, as with ser2net). Another program
can talk to it through the broker (Homie 5 topics above), or run 'tether emulate --tcp 2000'
for an emulated board of its own (tcp://127.0.0.1:2000; avrdude -P net:127.0.0.1:2000).
`);

    // Make the emulated world move: a slowly changing light level and a button press now and then.
    const t0 = Date.now();
    const world = setInterval(() => {
      const s = (Date.now() - t0) / 1000;
      board.uno.setAnalogInput(0, 2.5 + 2 * Math.sin(s / 4));
      board.uno.setDigitalInput(2, Math.floor(s) % 10 === 0);
    }, 250);

    // Which MQTT version the broker took (MQTT 5 first, 3.1.1 if it refuses 5: RabbitMQ 3.x, Aedes), once.
    if (!gateway.embedded) {
      const sayVersion = () => {
        const v = gateway.mqtt.protocolVersion;
        console.log(`tether demo: connected to the broker at ${redactUrl(gateway.mqtt.url)} with MQTT ${v === 5 ? '5' : '3.1.1'}${v === 4 ? ' (it does not accept MQTT 5)' : ''}`);
      };
      if (gateway.mqtt.connected) sayVersion();
      else gateway.mqtt.once('up', sayVersion);
    }

    const device = gateway.devices[0]!;
    device.link.on('state', (change: StateChange) => {
      clearLine();
      console.log(`${DEVICE_ID}: ${change.from} -> ${change.to} (${change.cause})`);
    });
    const tty = process.stdout.isTTY === true;
    const clearLine = () => {
      if (tty) process.stdout.write('\r\x1b[2K');
    };
    const status = () => {
      const s = device.link.stats();
      const seen = s.lastSeen === null ? 'never' : `${((performance.now() - s.lastSeen) / 1000).toFixed(1)} s ago`;
      const rtt = s.rttMs.last === null ? '-' : `${s.rttMs.last.toFixed(1)} ms`;
      const reboots = Object.values(s.reboots).reduce((a, b) => a + b, 0);
      const line = `${DEVICE_ID}  state ${s.state}  rtt ${rtt}  last seen ${seen}  reboots ${reboots}  asleep ${(s.asleepMs / 1000).toFixed(1)} s  queue ${device.outbox.size}`;
      if (tty) process.stdout.write(`\r\x1b[2K${line}`);
      else console.log(line);
    };
    const statusTimer = setInterval(status, tty ? 250 : 2000);

    return await new Promise<number>((resolve) => {
      let stopping = false;
      const stop = async () => {
        if (stopping) return;
        stopping = true;
        clearInterval(world);
        clearInterval(statusTimer);
        clearTimeout(forTimer);
        clearLine();
        await gateway.stop();
        await board.close();
        rmSync(dir, { recursive: true, force: true });
        console.log('tether demo: stopped');
        resolve(EXIT.ok);
      };
      const forTimer = forMs === null ? undefined : setTimeout(stop, forMs);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  },
};
