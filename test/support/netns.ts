import { execFileSync, spawnSync } from 'node:child_process';
import { ciMustHave } from './find-tool.ts';

/**
 * A network namespace of the test's own, reached from the host over a veth pair with two
 * private addresses (10.231.x.1 here, 10.231.x.2 inside): a "remote" host whose path can be
 * cut at the kernel level with nftables (packets dropped, nobody told), as a router that
 * loses a route or a NAT that forgets a mapping would. Needs root, iproute2 and nftables.
 */
export interface TestNetns {
  readonly name: string;
  /** The address inside the namespace. */
  readonly address: string;
  /** Command prefix to run a program inside it. */
  readonly prefix: string[];
  /** on: every packet to the namespace is dropped (in its input hook). off: passes again. */
  blackhole(on: boolean): void;
  destroy(): void;
}

/**
 * Whether the namespace tests run: as root with ip and nft, yes; otherwise skipped with a line
 * saying why, except under CI=true, where they run and fail (CI runs as root and installs both).
 */
export function netnsAvailable(): boolean {
  if (process.getuid?.() === 0 && ['ip', 'nft'].every((tool) => spawnSync(tool, ['-V'], { stdio: 'ignore' }).error === undefined)) return true;
  return ciMustHave('a network namespace (root, ip from iproute2, nft from nftables)', 'iproute2 nftables; run as root');
}

let counter = 0;

export function createNetns(): TestNetns {
  const id = `${process.pid % 10000}${counter++}`;
  const name = `tether-${id}`;
  const veth = `tv${id}`;
  const peer = `tv${id}p`;
  // A /30 per namespace, from the pid and a counter, in 10.231.0.0/16.
  const n = (process.pid * 7 + counter * 4) % 16384;
  const base = `10.231.${Math.floor((n * 4) / 256)}.${(n * 4) % 256}`;
  const [a, b, c, d] = base.split('.').map(Number) as [number, number, number, number];
  const host = `${a}.${b}.${c}.${d + 1}`;
  const inside = `${a}.${b}.${c}.${d + 2}`;
  const run = (...argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  const inNs = (...argv: string[]) => run('ip', 'netns', 'exec', name, ...argv);
  const destroy = () => {
    spawnSync('ip', ['link', 'del', veth], { stdio: 'ignore' });
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  };
  try {
    run('ip', 'netns', 'add', name);
    run('ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', peer);
    run('ip', 'link', 'set', peer, 'netns', name);
    run('ip', 'addr', 'add', `${host}/30`, 'dev', veth);
    run('ip', 'link', 'set', veth, 'up');
    inNs('ip', 'addr', 'add', `${inside}/30`, 'dev', peer);
    inNs('ip', 'link', 'set', peer, 'up');
    inNs('ip', 'link', 'set', 'lo', 'up');
    inNs('nft', 'add', 'table', 'inet', 'tether');
    inNs('nft', 'add', 'chain', 'inet', 'tether', 'input', '{ type filter hook input priority 0; }');
  } catch (err) {
    destroy();
    throw err;
  }
  process.once('exit', destroy);
  return {
    name,
    address: inside,
    prefix: ['ip', 'netns', 'exec', name],
    blackhole(on: boolean) {
      if (on) inNs('nft', 'add', 'rule', 'inet', 'tether', 'input', 'iifname', peer, 'drop');
      else inNs('nft', 'flush', 'chain', 'inet', 'tether', 'input');
    },
    destroy() {
      process.off('exit', destroy);
      destroy();
    },
  };
}
