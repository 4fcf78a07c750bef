import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../fixtures/brokers/aedes-process.ts', import.meta.url));

export interface RunningAedes {
  readonly url: string;
  readonly port: number;
  kill9(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Aedes (the embedded broker) in a child process, with the same controls as test/support/mosquitto.ts. */
export async function startAedesProcess(port = 0): Promise<RunningAedes> {
  let child: ChildProcess;
  let actualPort = port;
  const launch = async () => {
    for (let attempt = 0; ; attempt++) {
      child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, String(actualPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
      const ready = await new Promise<{ port: number } | null>((resolve) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const line = out.split('\n').find((l) => l.includes('"ready"'));
          if (line) resolve(JSON.parse(line) as { port: number });
        });
        child.once('exit', () => resolve(null));
      });
      if (ready) {
        actualPort = ready.port;
        return;
      }
      if (attempt > 50) throw new Error(`aedes process would not start on port ${actualPort}`);
      await new Promise((r) => setTimeout(r, 100)); // port still in TIME_WAIT / being freed
    }
  };
  const exited = () => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
  await launch();
  return {
    get url() {
      return `mqtt://127.0.0.1:${actualPort}`;
    },
    get port() {
      return actualPort;
    },
    async kill9() {
      child.kill('SIGKILL');
      await exited();
    },
    async restart() {
      await launch();
    },
    async stop() {
      child.kill('SIGTERM');
      await exited();
    },
  };
}
