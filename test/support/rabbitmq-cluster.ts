import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { canConnect } from './can-connect.ts';
import { freePort } from './free-port.ts';
import { waitFor } from './wait-for.ts';

/**
 * A RabbitMQ cluster of Debian's `rabbitmq-server` (3.10, apt package) on one machine, started
 * as the current user: each node its own name, ports, Mnesia and log dirs and config file in a
 * temp dir, the MQTT plugin on (its own MQTT port per node, quorum session queues, anonymous
 * MQTT allowed), joined with `rabbitmqctl join_cluster`. Facts found while writing it:
 * - /usr/sbin/rabbitmq-server switches to user rabbitmq when run as root: the scripts under
 *   /usr/lib/rabbitmq/bin run as whoever calls them, so we call those.
 * - The nodes find each other through epmd, which the first node would start as a daemon on
 *   port 4369 and leave behind (shared with anyone else's Erlang): we run our own epmd on a free
 *   port, loopback only, in the foreground (ERL_EPMD_PORT for the nodes and rabbitmqctl).
 * - Nodes and rabbitmqctl authenticate with the Erlang cookie in $HOME/.erlang.cookie (mode 0400;
 *   RABBITMQ_ERLANG_COOKIE is deprecated in 3.10): HOME is the cluster's temp dir.
 * - The start script stays the parent of the Erlang VM (it traps signals): each node runs in a
 *   process group of its own, and killNode/stop send SIGKILL to the group.
 * - A v5 CONNECT makes RabbitMQ 3.10's MQTT plugin close the connection without a CONNACK.
 * - About 20 s for three nodes to boot in parallel and 13 s more to join two of them (each
 *   rabbitmqctl call boots an Elixir VM), about 125 MB resident per node (see the report of
 *   issue 16).
 */
export interface RabbitNode {
  readonly name: string;
  readonly mqttPort: number;
  readonly mqttUrl: string;
  /** The node's AMQP 0-9-1 listener (loopback, a free port): the firehose tracer is read there. */
  readonly amqpPort: number;
  readonly amqpUrl: string;
  /** Pid of the process group leader (the start script). */
  readonly pid: number;
  readonly alive: boolean;
}

export interface RabbitCluster {
  readonly nodes: readonly RabbitNode[];
  /** The cluster's MQTT URLs, node 0 first. */
  readonly urls: string[];
  /** kill -9 of one node (its whole process group): no clean shutdown, sockets reset by the kernel. */
  killNode(i: number): Promise<void>;
  /** Resident memory of each live node's processes (MB), from ps. */
  memoryMb(): Promise<number[]>;
  /** rabbitmqctl against a node (for diagnostics): its output. */
  ctl(i: number, args: string[]): Promise<string>;
  /** Kills every node and epmd, removes the temp dir. Leaves nothing. */
  stop(): Promise<void>;
  /** How long start took (ms): boot and join. */
  readonly startMs: number;
}

export const RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';
const RABBITMQCTL = '/usr/lib/rabbitmq/bin/rabbitmqctl';
const EPMD_CANDIDATES = ['/usr/bin/epmd', '/usr/lib/erlang/bin/epmd'];

/** Whether Debian's rabbitmq-server (and epmd) is installed here. */
export function rabbitmqInstalled(): boolean {
  try {
    accessSync(RABBITMQ_SERVER, constants.X_OK);
    accessSync(RABBITMQCTL, constants.X_OK);
    findEpmd();
    return true;
  } catch {
    return false;
  }
}

function findEpmd(): string {
  for (const candidate of EPMD_CANDIDATES) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error('epmd not found (Debian package erlang-base)');
}

interface NodeProc {
  name: string;
  mqttPort: number;
  amqpPort: number;
  child: ChildProcess | null;
  exited: Promise<void>;
  output: string;
}

export async function startRabbitCluster(options: { nodes?: number; timeoutMs?: number } = {}): Promise<RabbitCluster> {
  if (!rabbitmqInstalled()) throw new Error('rabbitmq-server is not installed: run `apt-get install rabbitmq-server`');
  const count = options.nodes ?? 3;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const started = performance.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-rabbitmq-'));
  writeFileSync(path.join(dir, '.erlang.cookie'), randomBytes(20).toString('hex').toUpperCase(), { mode: 0o400 });
  const epmdPort = await freePort();
  const tag = `t${process.pid}x${randomBytes(3).toString('hex')}`;
  const baseEnv: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir,
    ERL_EPMD_PORT: String(epmdPort),
    // Debian's /etc/rabbitmq/rabbitmq-env.conf must not set anything for these nodes.
    RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'),
  };
  writeFileSync(path.join(dir, 'rabbitmq-env.conf'), '');

  const killers: Array<() => void> = [];
  const killAll = () => killers.forEach((k) => k());
  process.once('exit', killAll);

  const epmd = spawn(findEpmd(), ['-port', String(epmdPort), '-address', '127.0.0.1'], { stdio: 'ignore', detached: true, env: baseEnv });
  const epmdExited = new Promise<void>((resolve) => epmd.once('exit', () => resolve()));
  killers.push(() => killGroup(epmd));

  const nodes: NodeProc[] = [];
  const nodeEnv = new Map<number, NodeJS.ProcessEnv>();
  for (let i = 0; i < count; i++) {
    const name = `${tag}n${i}@localhost`;
    const [mqttPort, amqpPort, distPort] = [await freePort(), await freePort(), await freePort()];
    const nodeDir = path.join(dir, `n${i}`);
    mkdirSync(path.join(nodeDir, 'mnesia'), { recursive: true });
    mkdirSync(path.join(nodeDir, 'log'), { recursive: true });
    const conf = path.join(nodeDir, 'rabbitmq.conf');
    writeFileSync(
      conf,
      [
        `listeners.tcp.1 = 127.0.0.1:${amqpPort}`,
        `mqtt.listeners.tcp.1 = 127.0.0.1:${mqttPort}`,
        'mqtt.allow_anonymous = true',
        // Session queues on one node lose what was queued when that node dies (issue 16).
        'mqtt.durable_queue_type = quorum',
        'loopback_users = none',
        // Small machines: do not block publishers when the disk is under the 50 MB default.
        'disk_free_limit.absolute = 1MB',
        '',
      ].join('\n'),
    );
    writeFileSync(path.join(nodeDir, 'enabled_plugins'), '[rabbitmq_mqtt].\n');
    nodeEnv.set(i, {
      ...baseEnv,
      RABBITMQ_NODENAME: name,
      RABBITMQ_NODE_PORT: String(amqpPort),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: path.join(nodeDir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(nodeDir, 'log'),
      RABBITMQ_CONFIG_FILE: conf,
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(nodeDir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: path.join(nodeDir, 'pid'),
      // Erlang distribution on loopback only.
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    });
    const node: NodeProc = { name, mqttPort, amqpPort, child: null, exited: Promise.resolve(), output: '' };
    const child = spawn(RABBITMQ_SERVER, [], { cwd: nodeDir, env: nodeEnv.get(i), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    node.child = child;
    node.exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const collect = (chunk: Buffer) => (node.output = (node.output + chunk.toString()).slice(-4000));
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    killers.push(() => killGroup(child));
    nodes.push(node);
  }

  const ctl = (i: number, args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile(RABBITMQCTL, ['-n', nodes[i]!.name, ...args], { env: nodeEnv.get(i), timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} on ${nodes[i]!.name} failed: ${err.message}\n${stdout}${stderr}`));
        else resolve(stdout + stderr);
      });
    });

  const stop = async () => {
    killAll();
    await Promise.all([...nodes.map((n) => n.exited), epmdExited]);
    process.off('exit', killAll);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const deadline = performance.now() + timeoutMs;
    const left = () => Math.max(1000, deadline - performance.now());
    await Promise.all(
      nodes.map((node) =>
        waitFor(
          async () => {
            if (node.child?.exitCode !== null || node.child?.signalCode !== null) throw new Error(`rabbitmq node ${node.name} exited at start: ${node.output.trim()}`);
            return await canConnect(node.mqttPort);
          },
          { timeoutMs: left(), intervalMs: 200, what: `rabbitmq node ${node.name} to accept MQTT connections`, detail: () => node.output.slice(-1000) },
        ),
      ),
    );
    for (let i = 1; i < count; i++) {
      await ctl(i, ['stop_app']);
      await ctl(i, ['join_cluster', nodes[0]!.name]);
      await ctl(i, ['start_app']);
    }
    await ctl(0, ['await_online_nodes', String(count)]);
    for (const node of nodes) {
      await waitFor(() => canConnect(node.mqttPort), { timeoutMs: left(), intervalMs: 200, what: `rabbitmq node ${node.name} MQTT listener after joining` });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const startMs = Math.round(performance.now() - started);

  const views: RabbitNode[] = nodes.map((n) => ({
    name: n.name,
    mqttPort: n.mqttPort,
    mqttUrl: `mqtt://127.0.0.1:${n.mqttPort}`,
    amqpPort: n.amqpPort,
    // The default user (guest) may connect from anywhere: `loopback_users = none` above.
    amqpUrl: `amqp://guest:guest@127.0.0.1:${n.amqpPort}`,
    get pid() {
      return n.child?.pid ?? -1;
    },
    get alive() {
      return n.child !== null && n.child.exitCode === null && n.child.signalCode === null;
    },
  }));
  return {
    nodes: views,
    urls: views.map((v) => v.mqttUrl),
    startMs,
    ctl,
    memoryMb: () =>
      new Promise((resolve, reject) => {
        execFile('ps', ['-eo', 'pgid=,rss='], (err, stdout) => {
          if (err) return reject(err);
          const byGroup = new Map<number, number>();
          for (const line of stdout.trim().split('\n')) {
            const [pgid, rss] = line.trim().split(/\s+/).map(Number);
            byGroup.set(pgid!, (byGroup.get(pgid!) ?? 0) + rss!);
          }
          resolve(nodes.filter((n) => n.child?.pid !== undefined && n.child.exitCode === null).map((n) => Math.round((byGroup.get(n.child!.pid!) ?? 0) / 1024)));
        });
      }),
    async killNode(i: number) {
      const node = nodes[i]!;
      if (node.child) killGroup(node.child);
      await node.exited;
      // The VM is the script's child: wait until its listener is gone too.
      await waitFor(async () => !(await canConnect(node.mqttPort)), { timeoutMs: 10_000, what: `rabbitmq node ${node.name} to be gone` });
    },
    stop,
  };
}

/** SIGKILL to the process group a detached child leads (the Erlang VM and its port programs with it). */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
