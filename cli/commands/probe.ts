import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { PASSWORD_ENV } from '../../host/mqtt/broker-credentials.ts';
import { redactUrl } from '../../host/log/redact.ts';
import { intervalBelow, measureIdleTimeout, type IdleProbeResult, type ProbeProgress } from '../../host/probe/idle-probe.ts';
import { openBridgeProbe, openBrokerProbe } from '../../host/probe/probe-connections.ts';
import { parseTarget } from '../../host/transport/create-transport.ts';
import type { Command } from '../command.ts';
import { parseDuration } from '../duration.ts';
import { EXIT, UsageError } from '../usage-error.ts';

const help = `Usage: tether probe <url> [options]

Measures how long a connection on this path may stay idle before something on the way (a NAT,
a firewall, a reverse proxy, a load balancer) closes it or silently forgets it, and prints the
interval tether would keep it awake with. Progress is shown while it waits.

  <url>  a broker: mqtt://, mqtts://, ws://, wss:// (keepalive 0 and a throwaway client id,
         so only the path can cut it; one connection per idle time tried, all at once)
         or a serial-over-TCP bridge with a tether board: tcp://host:port (one connection,
         idle times tried in turn; stop the daemon using the bridge first)

Options:
  --max <duration>      longest idle time tried (default 10m)
  --timeout <duration>  how long a ping may take (default 5s)
  --username <name>     broker user (password from $${PASSWORD_ENV} or --password-file)
  --password-file <f>   file holding the broker password
  --ca <file>           CA certificate (PEM) for mqtts:// and wss://
  --json                the result as one JSON object on stdout
`;

export const probeCommand: Command = {
  name: 'probe',
  help,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        max: { type: 'string', default: '10m' },
        timeout: { type: 'string', default: '5s' },
        username: { type: 'string' },
        'password-file': { type: 'string' },
        ca: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length !== 1) throw new UsageError('give one url: a broker (mqtt://, mqtts://, ws://, wss://) or a bridge (tcp://host:port)');
    const url = positionals[0]!;
    const maxMs = parseDuration(values.max, '--max');
    const pingTimeoutMs = parseDuration(values.timeout, '--timeout');
    const isBroker = /^(mqtts?|wss?):\/\//i.test(url);
    let open;
    if (isBroker) {
      const password = values['password-file'] ? readFileSync(values['password-file'], 'utf8').trim() : process.env[PASSWORD_ENV];
      const ca = values.ca ? readFileSync(values.ca) : undefined;
      const parsed = new URL(url);
      const username = values.username ?? (parsed.username ? decodeURIComponent(parsed.username) : undefined);
      let protocolVersion: 5 | 4 | undefined; // found by the first connection, kept for the next ones
      open = async () => {
        const connection = await openBrokerProbe(url, { username, password: password ?? (parsed.password ? decodeURIComponent(parsed.password) : undefined), ca, protocolVersion });
        protocolVersion = connection.protocolVersion;
        return connection;
      };
    } else {
      const target = parseTarget(url);
      if (target.kind !== 'tcp') throw new UsageError(`'${url}' is neither a broker URL nor tcp://host:port`);
      open = () => openBridgeProbe(target.host, target.port);
    }
    const shown = redactUrl(url);
    const tty = process.stderr.isTTY === true;
    const say = (line: string) => process.stderr.write(tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    const started = Date.now();
    const onProgress = (p: ProbeProgress) => {
      const at = `[${fmt(Date.now() - started)}]`;
      switch (p.kind) {
        case 'connected':
          say(`${at} connected to ${shown} (round trip ${p.rttMs} ms); now idle, trying idle times up to ${fmt(maxMs)}`);
          break;
        case 'waiting':
          // A live line on a terminal; elsewhere one line every 10 s is enough.
          if (tty) process.stderr.write(`\r\x1b[2K${at} idle ${fmt(p.idleMs)}, next check at ${fmt(p.targetMs)} (${p.open} connection${p.open === 1 ? '' : 's'} open)`);
          else if (Math.round(p.idleMs / 1000) % 10 === 0) say(`${at} idle ${fmt(p.idleMs)}, next check at ${fmt(p.targetMs)}`);
          break;
        case 'alive':
          say(`${at} idle ${fmt(p.idleMs)}: still answers (${p.rttMs} ms)`);
          break;
        case 'closed':
          say(`${at} closed after ${fmt(p.idleMs)} idle: ${p.reason}`);
          break;
        case 'silent':
          say(`${at} idle ${fmt(p.idleMs)}: no answer (forgotten silently)`);
          break;
        case 'refining':
          say(`${at} narrowing down between ${fmt(p.fromMs)} and ${fmt(p.toMs)} with fresh connections`);
          break;
      }
    };
    let result: IdleProbeResult;
    try {
      result = await measureIdleTimeout({ open, parallel: isBroker, maxMs, pingTimeoutMs, onProgress });
    } catch (err) {
      console.error(`tether probe: ${(err as Error).message}`);
      return EXIT.failure;
    }
    if (values.json) {
      console.log(JSON.stringify({ url: shown, ...result, diedMs: Number.isFinite(result.diedMs) ? result.diedMs : null }));
      return EXIT.ok;
    }
    console.log(summary(shown, result, isBroker, maxMs));
    return EXIT.ok;
  },
};

function summary(url: string, r: IdleProbeResult, isBroker: boolean, maxMs: number): string {
  const lines: string[] = [];
  if (r.verdict === 'none') {
    lines.push(`${url}: no idle timeout up to ${fmt(maxMs)} (every idle connection still answered).`);
    lines.push(isBroker ? "tether's default (PINGREQ every broker.keepaliveSec, 30 s) is fine on this path." : "tether's default (a PING every keepalive.intervalMs, 1 s) is fine on this path.");
    return lines.join('\n');
  }
  const what =
    r.verdict === 'closed'
      ? `the path closes a connection idle for ${fmt(r.diedMs)} (${r.reason})`
      : `the path silently forgets a connection idle for more than ${fmt(r.survivedMs)} (at most ${fmt(r.diedMs)})`;
  lines.push(`${url}: idle timeout ${fmt(r.verdict === 'closed' ? r.diedMs : r.survivedMs)}: ${what}.`);
  const interval = r.intervalMs ?? intervalBelow(r.diedMs);
  if (isBroker) {
    lines.push(`tether would send traffic at least every ${fmt(interval)} on it: broker.keepaliveSec: ${Math.max(1, Math.floor(interval / 1000))}${interval >= 30_000 ? ' (the default 30 s is already below)' : ''}.`);
  } else {
    lines.push(`tether would PING at least every ${fmt(interval)} on it: keepalive.intervalMs at most ${Math.min(interval, 600_000)} (the default 1000 is below it; a longer interval for battery or bandwidth must stay under it).`);
  }
  return lines.join('\n');
}

function fmt(ms: number): string {
  if (!Number.isFinite(ms)) return 'never';
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  return s ? `${m} min ${s} s` : `${m} min`;
}
