import { parseArgs } from 'node:util';
import { listSerialPorts } from '../../host/transport/list-serial-ports.ts';
import type { Command } from '../command.ts';
import { EXIT } from '../usage-error.ts';

const help = `Usage: tether ports [--json]

Lists the serial ports of this machine with their USB vendor and product ids (works without
udev: it then reads /dev and /sys).

Options:
  --json      one JSON array instead of a table
`;

export const portsCommand: Command = {
  name: 'ports',
  help,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: { json: { type: 'boolean', default: false } },
      strict: true,
      allowPositionals: false,
    });
    const ports = await listSerialPorts();
    if (values.json) {
      console.log(JSON.stringify(ports, null, 2));
      return EXIT.ok;
    }
    if (ports.length === 0) {
      console.log('no serial ports found');
      return EXIT.ok;
    }
    const rows = ports.map((p) => [p.path, p.vendorId && p.productId ? `${p.vendorId}:${p.productId}` : '-', p.manufacturer ?? '-', p.serialNumber ?? '-']);
    const header = ['PORT', 'VID:PID', 'MANUFACTURER', 'SERIAL'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const row of [header, ...rows]) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
    return EXIT.ok;
  },
};
