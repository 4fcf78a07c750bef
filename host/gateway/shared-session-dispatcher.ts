import { EventEmitter } from 'node:events';
import { HOMIE_PREFIX } from '../homie/homie-topics.ts';
import type { BrokerSessionEvents, MessageInfo } from '../mqtt/broker-session.ts';
import type { Publisher } from '../mqtt/outbox-pump.ts';

/** What the dispatcher needs of the one broker session (BrokerSession is one). */
export interface SharedSession extends Publisher {
  on(event: 'up', listener: (info: { sessionPresent: boolean }) => void): unknown;
  on(event: 'down', listener: (reason: string) => void): unknown;
  on(event: 'message', listener: (topic: string, payload: Buffer, info: MessageInfo) => void): unknown;
  off(event: 'up' | 'down' | 'message', listener: (...args: any[]) => void): unknown;
}

type ViewEvents = Pick<BrokerSessionEvents, 'up' | 'down' | 'message'>;

/**
 * One board's side of the shared session: publishes through it, hears its ups and downs, and
 * only the messages on its own topics.
 */
export class SessionView extends EventEmitter<ViewEvents> implements Publisher {
  /** What the session's last `up` said (null before the first), for a board that starts listening late. */
  lastUp: { sessionPresent: boolean } | null = null;

  constructor(
    readonly deviceId: string,
    private readonly session: SharedSession,
  ) {
    super();
  }

  get connected(): boolean {
    return this.session.connected;
  }

  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    return this.session.publish(topic, payload, opts);
  }
}

/**
 * Shared-session mode (`broker.sharedSession: true`): one broker session carries every board.
 * Rather than each board's parts listening on that session (N listeners per event, a
 * MaxListenersExceededWarning past 10 boards, and every message handed to every board), the
 * dispatcher listens once per event and hands each board a SessionView: `up` and `down` go to
 * every view, a message only to the board its topic names (`homie/5/<id>/...`), found in a map.
 */
export class SharedSessionDispatcher {
  private readonly views = new Map<string, SessionView>();
  private attached = false;
  private readonly onUp = (info: { sessionPresent: boolean }) => {
    for (const view of this.views.values()) {
      view.lastUp = info;
      view.emit('up', info);
    }
  };
  private readonly onDown = (reason: string) => {
    for (const view of this.views.values()) view.emit('down', reason);
  };
  private readonly onMessage = (topic: string, payload: Buffer, info: MessageInfo) => {
    const id = deviceOfTopic(topic);
    if (id !== undefined) this.views.get(id)?.emit('message', topic, payload, info);
  };

  constructor(private readonly session: SharedSession) {}

  /** The view of board `deviceId` (the same one on every call). */
  view(deviceId: string): SessionView {
    let view = this.views.get(deviceId);
    if (!view) {
      view = new SessionView(deviceId, this.session);
      this.views.set(deviceId, view);
    }
    return view;
  }

  /** Starts listening to the session: one listener per event, however many boards. */
  attach(): void {
    if (this.attached) return;
    this.attached = true;
    this.session.on('up', this.onUp);
    this.session.on('down', this.onDown);
    this.session.on('message', this.onMessage);
  }

  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.session.off('up', this.onUp);
    this.session.off('down', this.onDown);
    this.session.off('message', this.onMessage);
  }
}

/** The board id a Homie topic belongs to (`homie/5/<id>/...`), if any. */
export function deviceOfTopic(topic: string): string | undefined {
  if (!topic.startsWith(`${HOMIE_PREFIX}/`)) return undefined;
  const rest = topic.slice(HOMIE_PREFIX.length + 1);
  const slash = rest.indexOf('/');
  const id = slash < 0 ? rest : rest.slice(0, slash);
  return id === '' ? undefined : id;
}
