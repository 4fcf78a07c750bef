import { describe, expect, it } from 'vitest';
import five from 'johnny-five';
import { DeviceLink } from '../../host/link/device-link.ts';
import { serveDeviceOverTcp } from '../../emulator/simulator/tcp-device-server.ts';
import { TetherIO } from '../../host/tether-io/tether-io.ts';
import { activeResources, leakedSince } from '../support/handles.ts';
import { within } from '../support/wait-for.ts';

// The protocol-level simulated board (for fleets and benchmarks) behind a TCP bridge.

describe('simulated device over tcp://', () => {
  it('a DeviceLink gets ready over TCP, state registers round-trip, a hang is lost, no handles left', async () => {
    const baseline = activeResources();
    const sim = await serveDeviceOverTcp({ bootId: 7 });
    const link = new DeviceLink({ target: sim.target, session: { pingIntervalMs: 100, misses: 3 } });
    link.start();
    await link.ready(5000);
    expect(link.session.bootId).toBe(7);
    await link.writeState(3, Uint8Array.from([1, 2, 3]));
    expect([...(await link.readState(3, 3))]).toEqual([1, 2, 3]);
    const lost = new Promise((resolve) => link.on('state', (c) => c.to === 'lost' && resolve(c)));
    sim.device.setFrozen(true);
    await within(lost, { timeoutMs: 5000, what: 'the link lost' });
    await link.close();
    await sim.close();
    expect(await leakedSince(baseline)).toEqual({});
  });

  it('Johnny-Five gets ready through TetherIO and a Sensor reads the simulated analog value', async () => {
    const sim = await serveDeviceOverTcp({ analog: () => 300 });
    const io = new TetherIO({ port: sim.target, session: { pingIntervalMs: 200 } });
    const board = new five.Board({ io, repl: false, debug: false, timeout: 10_000 });
    await new Promise<void>((resolve) => board.on('ready', () => resolve()));
    const sensor = new five.Sensor({ pin: 'A0', board, freq: 20 });
    const value = await new Promise<number>((resolve) => sensor.on('data', function (this: { value: number }) {
      if (this.value === 300) resolve(this.value);
    }));
    expect(value).toBe(300);
    await io.close();
    await sim.close();
  });
});
