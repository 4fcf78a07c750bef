import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { EmulatedUno } from './emulated-uno.ts';
import { createSerialUno, type SerialLineIn, type SerialUnoOptions } from './serial-uno.ts';

export interface BoardOnTcpOptions extends SerialUnoOptions {
  /** Address to listen on (default 127.0.0.1: loopback only). */
  host?: string;
  /** TCP port (default 0: any free port; see `port` and `url` once started). */
  port?: number;
}

interface BoardOnTcpEvents {
  /** A client connected and now owns the serial port. */
  connect: [remote: string];
  /** The client went away (it closed, or close()/unplug() cut it). */
  disconnect: [remote: string];
  /** A client was turned away: another one holds the port, or the board is unplugged. */
  refused: [remote: string, reason: string];
}

/** What ser2net 4 sends a second client before closing it (checked against ser2net 4.3.11). */
export const PORT_IN_USE_MESSAGE = 'Port already in use\r\n';

/**
 * An emulated Uno whose serial port is served over TCP, as ser2net (or ESP-Link) serves a
 * real board's: raw bytes both ways, no telnet, no pty and no socat. One client at a time:
 * as ser2net does by default, a second client gets "Port already in use" and is closed while
 * the first keeps the port. The board keeps running between clients; what it sends while no
 * client is connected is lost, as a serial line nobody reads. Pacing is the emulator's, as on
 * the pty: bytes reach the MCU at its UART's baud rate and leave as the firmware sends them.
 *
 * A TCP stream has no DTR either: each new connection counts as a fresh open, so with a
 * bootloader a client's first GET_SYNC resets the MCU into it (see SerialUnoOptions.autoReset),
 * and `avrdude -c arduino -P net:HOST:PORT` works.
 */
export class BoardOnTcp extends EventEmitter<BoardOnTcpEvents> {
  private client: net.Socket | null = null;
  private readonly sockets = new Set<net.Socket>();
  private plugged = true;
  /** Bytes from the MCU dropped because no client was connected or the client did not keep up. */
  dropped = 0;
  /** Clients served so far. */
  connections = 0;

  private constructor(
    readonly uno: EmulatedUno,
    private readonly lineIn: SerialLineIn,
    private readonly server: net.Server,
    readonly host: string,
    readonly port: number,
  ) {
    super();
    uno.on('data', (bytes) => {
      const client = this.client;
      if (!client || client.writableNeedDrain) this.dropped += bytes.length;
      else client.write(bytes);
    });
    server.on('connection', (socket) => this.accept(socket));
  }

  static async start(options: BoardOnTcpOptions): Promise<BoardOnTcp> {
    const { uno, lineIn } = await createSerialUno(options);
    const host = options.host ?? '127.0.0.1';
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => {}); // after listen, errors belong to single connections
    const board = new BoardOnTcp(uno, lineIn, server, host, (server.address() as net.AddressInfo).port);
    uno.start();
    return board;
  }

  /** `tcp://host:port`, for `connect()`, a daemon config or TetherIO. */
  get url(): string {
    return `tcp://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  /** External resets done by the faked DTR auto-reset. */
  get autoResets(): number {
    return this.lineIn.autoResets;
  }

  /** Whether a client holds the port now. */
  get clientConnected(): boolean {
    return this.client !== null;
  }

  private accept(socket: net.Socket): void {
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('error', () => {}); // a reset by the peer ends in 'close' all the same
    if (this.client || !this.plugged) {
      const reason = this.plugged ? 'port in use' : 'unplugged';
      // ser2net says so to the newcomer; an unplugged device makes it close at once.
      if (this.plugged) socket.end(PORT_IN_USE_MESSAGE);
      else socket.destroy();
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      this.emit('refused', remote, reason);
      return;
    }
    this.sockets.add(socket);
    this.client = socket;
    this.connections++;
    socket.setNoDelay(true);
    this.lineIn.opened();
    socket.on('data', (bytes: Buffer) => this.lineIn.write(bytes));
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (this.client === socket) {
        this.client = null;
        this.emit('disconnect', remote);
      }
    });
    this.emit('connect', remote);
  }

  /** Cuts the current client, if any (the board keeps running). */
  dropClient(): void {
    this.client?.destroy();
  }

  /** Pulls the cable behind the bridge: the client is cut, new ones are closed at once, the board loses power. */
  async unplug(): Promise<void> {
    this.plugged = false;
    this.uno.stop();
    await this.destroySockets();
  }

  /** Plugs it back in: the board powers up again and the port takes a client again. */
  async replug(): Promise<void> {
    this.uno.powerCycle();
    this.plugged = true;
    this.uno.start();
  }

  /** Stops the board and the server; resolves when every socket is closed. */
  async close(): Promise<void> {
    this.plugged = false;
    this.uno.stop();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.destroySockets();
    await closed;
  }

  private async destroySockets(): Promise<void> {
    const all = [...this.sockets];
    await Promise.all(
      all.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.closed) return resolve();
            s.once('close', () => resolve());
            s.destroy();
          }),
      ),
    );
  }
}
