import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deviceOfTopic, SharedSessionDispatcher } from '../../host/gateway/shared-session-dispatcher.ts';

/** The one broker session, as the dispatcher sees it: events plus publish. */
class FakeSession extends EventEmitter {
  connected = false;
  published: string[] = [];
  async publish(topic: string): Promise<void> {
    this.published.push(topic);
  }
}

describe('SharedSessionDispatcher (shared-session mode: one listener per event, messages by topic)', () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  beforeEach(() => {
    warnings.length = 0;
    process.on('warning', onWarning);
  });
  afterEach(() => {
    process.off('warning', onWarning);
  });

  it('a message reaches only the board its topic names; up and down reach every board; the session has one listener per event', async () => {
    const session = new FakeSession();
    const dispatcher = new SharedSessionDispatcher(session);
    const ids = Array.from({ length: 50 }, (_, i) => `board-${i}`);
    const heard = new Map<string, string[]>(ids.map((id) => [id, []]));
    for (const id of ids) {
      const view = dispatcher.view(id);
      // What a board's parts attach: its outbox pump (up, down) and the gateway device (up, message).
      view.on('up', () => heard.get(id)!.push('up'));
      view.on('up', () => {});
      view.on('down', (reason) => heard.get(id)!.push(`down: ${reason}`));
      view.on('message', (topic, payload) => heard.get(id)!.push(`${topic}=${payload.toString()}`));
    }
    dispatcher.attach();
    expect(session.listenerCount('up')).toBe(1);
    expect(session.listenerCount('down')).toBe(1);
    expect(session.listenerCount('message')).toBe(1);

    session.connected = true;
    session.emit('up', { sessionPresent: true });
    session.emit('message', 'homie/5/board-7/relay/on/set', Buffer.from('true'), { retain: false });
    session.emit('message', 'homie/5/board-70/relay/on/set', Buffer.from('true'), { retain: false }); // no such board
    session.emit('message', 'homeassistant/status', Buffer.from('online'), { retain: false }); // no board's topic
    session.emit('down', 'closed');

    for (const id of ids) {
      const expected = id === 'board-7' ? ['up', 'homie/5/board-7/relay/on/set=true', 'down: closed'] : ['up', 'down: closed'];
      expect(heard.get(id), id).toEqual(expected);
    }
    expect(dispatcher.view('board-3').lastUp).toEqual({ sessionPresent: true });
    // Publishing goes through the one session.
    expect(dispatcher.view('board-3').connected).toBe(true);
    await dispatcher.view('board-3').publish('homie/5/board-3/$state', Buffer.from('ready'), { qos: 1, retain: true });
    expect(session.published).toEqual(['homie/5/board-3/$state']);

    await new Promise((r) => setImmediate(r)); // process warnings are emitted on the next tick
    expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
    expect(warnings).toEqual([]);
  });

  it('detach() removes its listeners from the session', () => {
    const session = new FakeSession();
    const dispatcher = new SharedSessionDispatcher(session);
    dispatcher.view('a');
    dispatcher.attach();
    dispatcher.attach();
    expect(session.listenerCount('up')).toBe(1);
    dispatcher.detach();
    expect(session.eventNames()).toEqual([]);
  });

  it('deviceOfTopic names the board of a Homie topic, nothing for other topics', () => {
    expect(deviceOfTopic('homie/5/uno-1/led/on/set')).toBe('uno-1');
    expect(deviceOfTopic('homie/5/uno-1')).toBe('uno-1');
    expect(deviceOfTopic('homie/5//x')).toBeUndefined();
    expect(deviceOfTopic('homie/4/uno-1/led')).toBeUndefined();
    expect(deviceOfTopic('homeassistant/status')).toBeUndefined();
  });
});
