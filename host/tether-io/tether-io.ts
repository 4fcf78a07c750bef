import firmataIo from 'firmata-io';
import { DeviceLink, type DeviceLinkOptions } from '../link/device-link.ts';
import type { RebootInfo, StateChange } from '../session/device-session.ts';
import { LinkPort } from './link-port.ts';

export interface TetherIOOptions extends Omit<DeviceLinkOptions, 'target'> {
  /** Serial device path or `tcp://host:port`. */
  port: string;
  /** A link made (not yet started) by the caller, used instead of making one from the options. */
  link?: DeviceLink;
}

const REPORT_VERSION = 0xf9;
const QUERY_FIRMWARE = [0xf0, 0x79, 0xf7];
const CAPABILITY_QUERY = [0xf0, 0x6b, 0xf7];
const ANALOG_MAPPING_QUERY = [0xf0, 0x69, 0xf7];
/** How long firmata.js's handshake may stall on a lost answer before the query is sent again. */
const HANDSHAKE_RETRY_MS = 1000;

type HandshakeStage = 'version' | 'firmware' | 'capabilities' | 'analog-mapping' | 'done';

/**
 * A Johnny-Five IO plugin: firmata.js over a tether DeviceLink. The program keeps working
 * across unplug/replug and device resets; pins and values are replayed when the board forgot
 * them. Events besides firmata.js's own: `state` (every change), `lost`, `sleeping`, and
 * `ready` again each time the board is back after being lost or asleep, `reboot`.
 */
export class TetherIO extends firmataIo.Firmata {
  readonly link: DeviceLink;
  private handshakeStage: HandshakeStage = 'version';
  private handshakeTimer: NodeJS.Timeout | undefined;
  /** The stage whose query waits in the link's queue for the sleeping board (asked once per sleep). */
  private queuedForWake: HandshakeStage | null = null;

  constructor(options: TetherIOOptions) {
    const { port, link: given, ...linkOptions } = options;
    const link = given ?? new DeviceLink({ ...linkOptions, target: port });
    const linkPort = new LinkPort(link);
    super(linkPort, { reportVersionTimeout: 2000 });
    this.link = link;
    // `name` stays "Firmata": Johnny-Five normalizes pins ("A0") only for IO named so.
    let firstUp = true;
    link.on('up', () => {
      // A board that was already running will not announce itself: ask, so firmata.js's
      // handshake does not wait for its own timeout.
      if (firstUp) {
        linkPort.emit('open'); // firmata.js turns this into 'connect', which Johnny-Five waits for
        link.writeFirmata([REPORT_VERSION, ...QUERY_FIRMWARE]);
      }
      firstUp = false;
    });
    link.on('state', (change: StateChange) => {
      if (change.to === 'sleeping') this.queuedForWake = null;
      this.emit('state', change);
      if (change.to === 'lost') this.emit('lost', change);
      else if (change.to === 'sleeping') this.emit('sleeping', change);
      else if (change.to === 'ready' && this.isReady && (change.from === 'lost' || change.from === 'sleeping' || change.from === 'init')) {
        this.emit('ready');
      }
    });
    link.on('reboot', (info: RebootInfo) => this.emit('reboot', info));
    this.followHandshake();
    link.start();
  }

  /**
   * firmata.js's handshake is a chain of one-shot waits (version, firmware, capabilities,
   * analog mapping) with no retry: one lost answer and the program never gets 'ready'. Ask
   * again for whatever it is still waiting for while the board is reachable. A board that
   * sleeps is asked too, once per sleep: the link queues the query and wakes the board for it.
   * Asking only while it was `ready` left a board that is awake 400 ms in 3.4 s without
   * Johnny-Five for as long as the 1 s ticks kept missing its awake windows (a query sent just
   * before it fell asleep is lost, and is not resent: queries are not state), so a component's
   * command never reached it (seen in CI: homeassistant-daemon.test.ts).
   */
  private followHandshake(): void {
    this.once('reportversion', () => (this.handshakeStage = 'firmware'));
    this.once('queryfirmware', () => (this.handshakeStage = 'capabilities'));
    this.once('capability-query', () => (this.handshakeStage = 'analog-mapping'));
    this.once('ready', () => {
      this.handshakeStage = 'done';
      clearInterval(this.handshakeTimer);
    });
    this.handshakeTimer = setInterval(() => {
      const state = this.link.state;
      if (this.handshakeStage === 'done' || (state !== 'ready' && state !== 'sleeping')) return;
      if (state === 'sleeping') {
        if (this.queuedForWake === this.handshakeStage) return; // already waiting for the wake
        this.queuedForWake = this.handshakeStage;
      }
      const query = {
        version: [REPORT_VERSION, ...QUERY_FIRMWARE],
        firmware: QUERY_FIRMWARE,
        capabilities: CAPABILITY_QUERY,
        'analog-mapping': ANALOG_MAPPING_QUERY,
      }[this.handshakeStage];
      this.link.writeFirmata(query);
    }, HANDSHAKE_RETRY_MS);
  }

  /** Releases the board (its host-lost policy applies) and closes the port. */
  async close(): Promise<void> {
    clearInterval(this.handshakeTimer);
    await this.link.close();
  }
}
