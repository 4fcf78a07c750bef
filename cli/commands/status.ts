import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { HOMIE_PREFIX } from '../../host/homie/homie-topics.ts';
import { refreshTopics } from '../../host/homie/refresh-requests.ts';
import type { Command } from '../command.ts';
import { parseDuration } from '../duration.ts';
import { EXIT, UsageError } from '../usage-error.ts';

const help = `Usage: tether status --broker <url> [--wait <duration>] [--json] [--retained-only]

Shows the devices a broker knows about (Homie 5, retained topics): each device's $state and
its tether keepalive properties (RTT, last seen, boot id, reset cause, reboots, time asleep).
It also asks every tether gateway for current state (homie/5/$broadcast/tether-refresh), for
brokers that do not hand out retained messages (a RabbitMQ cluster).

Options:
  --broker <url>     the broker (mqtt://host:port, mqtts://, ws://, wss://); required
  --wait <duration>  how long to collect messages (default 1500ms)
  --json             one JSON object instead of a table
  --retained-only    do not ask the gateways: retained messages only

Exit codes: 0 ok, 1 broker unreachable, 2 bad usage.`;

interface DeviceView {
  state?: string;
  name?: string;
  keepalive: Record<string, string>;
}

export const statusCommand: Command = {
  name: 'status',
  help,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        broker: { type: 'string' },
        wait: { type: 'string', default: '1500ms' },
        json: { type: 'boolean', default: false },
        'retained-only': { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
    if (!values.broker) throw new UsageError('--broker <url> is required');
    if (!/^(mqtts?|wss?):\/\/\S+/.test(values.broker)) throw new UsageError(`--broker takes a URL such as mqtt://host:1883, not '${values.broker}'`);
    const waitMs = parseDuration(values.wait, '--wait');

    const client = mqtt.connect(values.broker, { reconnectPeriod: 0, connectTimeout: 5000, clean: true });
    const devices = new Map<string, DeviceView>();
    const view = (id: string) => {
      let d = devices.get(id);
      if (!d) devices.set(id, (d = { keepalive: {} }));
      return d;
    };
    try {
      await new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', reject);
        client.once('close', () => reject(new Error('connection closed')));
      });
    } catch (err) {
      client.end(true);
      console.error(`tether status: cannot reach the broker at ${values.broker}: ${(err as Error).message}`);
      return EXIT.failure;
    }
    client.on('message', (topic, payload) => {
      const parts = topic.slice(HOMIE_PREFIX.length + 1).split('/');
      const [id, a, b] = parts;
      if (!id) return;
      const text = payload.toString();
      if (a === '$state' && parts.length === 2) view(id).state = text;
      else if (a === '$description' && parts.length === 2) {
        try {
          view(id).name = (JSON.parse(text) as { name?: string }).name;
        } catch {
          // not our business to validate others' descriptions
        }
      } else if (a === 'tether' && b && parts.length === 3) view(id).keepalive[b] = text;
    });
    await client.subscribeAsync([`${HOMIE_PREFIX}/+/$state`, `${HOMIE_PREFIX}/+/$description`, `${HOMIE_PREFIX}/+/tether/+`], { qos: 0 });
    // Subscribed first: the answers (current state, not retained) come while we wait.
    if (!values['retained-only']) await client.publishAsync(refreshTopics.broadcast, '', { qos: 0, retain: false });
    await new Promise((r) => setTimeout(r, waitMs));
    await client.endAsync();

    const sorted = [...devices.entries()].filter(([, d]) => d.state !== undefined).sort(([a], [b]) => a.localeCompare(b));
    if (values.json) {
      console.log(JSON.stringify(Object.fromEntries(sorted), null, 2));
      return EXIT.ok;
    }
    if (sorted.length === 0) {
      console.log(`no Homie 5 devices on ${values.broker}`);
      return EXIT.ok;
    }
    const header = ['DEVICE', 'STATE', 'RTT ms', 'LAST SEEN', 'BOOT', 'RESET CAUSE', 'REBOOTS', 'ASLEEP s'];
    const rows = sorted.map(([id, d]) => [
      id,
      d.state ?? '-',
      d.keepalive.rtt ?? '-',
      d.keepalive['last-seen'] ?? '-',
      d.keepalive['boot-id'] ?? '-',
      d.keepalive['reset-cause'] ?? '-',
      d.keepalive.reboots ?? '-',
      d.keepalive['asleep-time'] ?? '-',
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const row of [header, ...rows]) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
    return EXIT.ok;
  },
};
