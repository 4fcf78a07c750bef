import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

// systemd's side of Type=notify, played by the test: a unix datagram socket in NOTIFY_SOCKET,
// read by a small python3 listener with SO_PASSCRED, as systemd reads its notify socket: the
// kernel attaches the sender's pid to each datagram (SCM_CREDENTIALS), which is what
// NotifyAccess=main checks. The ancillary buffer holds the credentials only, so an fd passed
// by systemd-notify's barrier is dropped (closed) as systemd closes it (socat would keep it,
// stalling each send 5 s).

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const LISTENER = `
import json, socket, struct, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind('\\0' + addr[1:] if addr.startswith('@') else addr)
print(json.dumps({'listening': True}), flush=True)
while True:
    data, anc, flags, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack('iII', value[:12])[0]
    print(json.dumps({'text': data.decode('utf-8', 'replace'), 'pid': pid}), flush=True)
`;

export interface Datagram {
  at: number;
  text: string;
  /** The sender's pid, from SCM_CREDENTIALS. */
  pid: number | null;
}

/** A NOTIFY_SOCKET listener: every datagram with its arrival time (performance.now()). */
export class NotifyListener {
  readonly received: Datagram[] = [];
  private waiters: Array<{ match: (d: Datagram) => boolean; resolve: (d: Datagram) => void }> = [];
  private constructor(
    readonly address: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(address: string): Promise<NotifyListener> {
    const child = spawn(PYTHON, ['-u', '-c', LISTENER, address], { stdio: ['ignore', 'pipe', 'pipe'] });
    const listener = new NotifyListener(address, child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      child.once('exit', (code) => reject(new Error(`notify listener exited (${code}): ${stderr}`)));
      child.stdout!.on('data', (d: Buffer) => {
        buffered += d.toString();
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const value = JSON.parse(buffered.slice(0, nl)) as { text: string; pid: number | null } | { listening: true };
          buffered = buffered.slice(nl + 1);
          if ('listening' in value) {
            resolve();
            continue;
          }
          const datagram = { at: performance.now(), text: value.text, pid: value.pid };
          listener.received.push(datagram);
          listener.waiters = listener.waiters.filter((w) => (w.match(datagram) ? (w.resolve(datagram), false) : true));
        }
      });
    });
    return listener;
  }

  /** Datagrams carrying `assignment` (e.g. 'WATCHDOG=1'), optionally since `from`. */
  with(assignment: string, from = 0): Datagram[] {
    return this.received.filter((d) => d.at >= from && d.text.split('\n').includes(assignment));
  }

  waitFor(match: (d: Datagram) => boolean, timeoutMs = 15_000, from = 0): Promise<Datagram> {
    const seen = this.received.find((d) => d.at >= from && match(d));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching datagram within ${timeoutMs} ms; got ${JSON.stringify(this.received.slice(-5))}`)), timeoutMs);
      this.waiters.push({
        match: (d) => d.at >= from && match(d),
        resolve: (d) => {
          clearTimeout(timer);
          resolve(d);
        },
      });
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.kill('SIGTERM');
    });
  }
}

export const has = (assignment: string) => (d: Datagram) => d.text.split('\n').includes(assignment);

/** Largest gap between consecutive arrivals (ms). */
export function maxGap(ds: Datagram[]): number {
  let gap = 0;
  for (let i = 1; i < ds.length; i++) gap = Math.max(gap, ds[i]!.at - ds[i - 1]!.at);
  return gap;
}
