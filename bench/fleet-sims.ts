// The simulated boards of the fleet bench (bench/fleet-scale.bench.ts), in a process of their
// own so that answering thousands of PINGs is not counted against the bench's measuring or
// the daemon. argv: <count> <first port>. Each board is a SimulatedDevice behind a TCP bridge
// on 127.0.0.1 (serveDeviceOverTcp), on ports from <first port> up, skipping ports in use.
// Prints one JSON line {"targets": [...]} once all listen; stops on SIGTERM or when stdin closes.
import { serveDeviceOverTcp, type DeviceOnTcp } from '../emulator/simulator/tcp-device-server.ts';

const count = Number(process.argv[2]);
let port = Number(process.argv[3]);
if (!Number.isInteger(count) || count < 1 || !Number.isInteger(port)) {
  console.error('usage: fleet-sims.ts <count> <first port>');
  process.exit(2);
}
const sims: DeviceOnTcp[] = [];
for (let i = 0; i < count; i++) {
  for (;;) {
    if (port > 65535) throw new Error(`ran out of ports after ${sims.length} boards`);
    try {
      sims.push(await serveDeviceOverTcp({ bootId: (port % 60000) + 1, port: port++ }));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
}
process.stdout.write(`${JSON.stringify({ targets: sims.map((s) => s.target), nextPort: port })}\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await Promise.all(sims.map((s) => s.close()));
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.stdin.on('close', () => void stop()); // the bench died: do not linger
process.stdin.resume();
