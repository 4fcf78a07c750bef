import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../emulator/testing/manual-clock.ts';
import { RecordingLogger } from '../../emulator/testing/recording-logger.ts';
import { validateConfig } from '../../host/config/load-config.ts';
import { BoardOwnership, ownerTopics, outranks, type OwnedBoard, type OwnerRecord, type OwnershipSession } from '../../host/gateway/board-ownership.ts';
import type { BrokerSessionEvents, MessageInfo } from '../../host/mqtt/broker-session.ts';

// BoardOwnership's decisions with a ManualClock. The broker here is a few lines of MQTT as
// the spec states it: retained messages go to a new subscription with RETAIN 1, live ones to
// existing subscriptions with RETAIN 0, in publish order (the integration tests use Mosquitto).

class TinyBroker {
  readonly retained = new Map<string, Buffer>();
  readonly sessions = new Set<FakeSession>();
  publish(topic: string, payload: Buffer, retain: boolean): void {
    if (retain) this.retained.set(topic, payload);
    for (const s of this.sessions) if (s.matches(topic)) s.deliver(topic, payload, false);
  }
}

class FakeSession extends EventEmitter<BrokerSessionEvents> implements OwnershipSession {
  connected = true;
  private readonly filters = new Set<string>();
  constructor(private readonly broker: TinyBroker) {
    super();
    broker.sessions.add(this);
  }
  matches(topic: string): boolean {
    const t = topic.split('/');
    return [...this.filters].some((f) => {
      const p = f.split('/');
      return p.length === t.length && p.every((x, i) => x === '+' || x === t[i]);
    });
  }
  deliver(topic: string, payload: Buffer, retain: boolean): void {
    const info: MessageInfo = { retain, qos: 1, dup: false };
    queueMicrotask(() => this.connected && this.emit('message', topic, payload, info));
  }
  /** One SUBSCRIBE with one filter or a list of them. */
  async subscribe(topics: string | readonly string[]): Promise<void> {
    for (const topic of typeof topics === 'string' ? [topics] : topics) {
      const fresh = !this.filters.has(topic);
      this.filters.add(topic);
      if (fresh) for (const [t, p] of this.broker.retained) if (this.matches(t) && (topic === t || topic.includes('+'))) this.deliver(t, p, true);
    }
  }
  async publish(topic: string, payload: string | Buffer, options: { retain: boolean }): Promise<void> {
    if (!this.connected) throw new Error('not connected');
    this.broker.publish(topic, Buffer.from(payload), options.retain);
  }
  /** The process dies: its gateway Will `lost` is published (no Will Delay here). */
  die(gatewayId: string): void {
    this.connected = false;
    this.broker.sessions.delete(this);
    this.broker.publish(`homie/5/${gatewayId}/$state`, Buffer.from('lost'), true);
  }
}

class FakeBoard implements OwnedBoard {
  readonly mqtt = new EventEmitter<BrokerSessionEvents>();
  readonly calls: string[] = [];
  constructor(
    readonly id: string,
    readonly settings: { port: string; standby: boolean; takeoverDelayMs: number },
  ) {}
  async acquire(claim: OwnerRecord, options: { superseded: boolean }): Promise<void> {
    this.calls.push(`acquire ${claim.gateway} ${claim.epoch}${options.superseded ? ' superseded' : ''}`);
  }
  async release(reason: string): Promise<void> {
    this.calls.push(`release ${reason}`);
  }
  async standBy(reason: string): Promise<void> {
    this.calls.push(`standBy ${reason}`);
  }
}

const settle = () => new Promise<void>((r) => setImmediate(r));

/** b1 behind a TCP bridge (it can move between gateways), with the default 3 s takeover delay. */
const onBridge = (standby: boolean) => new FakeBoard('b1', { port: 'tcp://bridge:2000', standby, takeoverDelayMs: 3000 });

/** gw-a, configured as b1's owner, once it holds it (no record: it asked and waited the delay). */
async function ownerHolding(broker: TinyBroker, clock: ManualClock) {
  const a = gateway(broker, clock, 'gw-a', onBridge(false));
  await a.ownership.start();
  await settle();
  clock.advance(3000);
  await settle();
  expect(a.ownership.phase('b1')).toBe('held');
  return a;
}

/** gw-b, configured as b1's standby, started. */
async function standbyStarted(broker: TinyBroker, clock: ManualClock) {
  const b = gateway(broker, clock, 'gw-b', onBridge(true));
  await b.ownership.start();
  await settle();
  return b;
}

function gateway(broker: TinyBroker, clock: ManualClock, id: string, board: FakeBoard) {
  const session = new FakeSession(broker);
  // The gateway's own session announces it (the Homie extension does so on 'up').
  void session.publish(`homie/5/${id}/$state`, 'ready', { retain: true });
  const ownership = new BoardOwnership({ gatewayId: id, session, boards: [board], clock, logger: new RecordingLogger() });
  return { session, ownership, board };
}

describe('BoardOwnership', () => {
  it('subscribes to the boards\' claim topics 256 boards to a SUBSCRIBE, 4 SUBSCRIBEs in flight, and sends the sync marker only once every SUBACK is in', async () => {
    const broker = new TinyBroker();
    const clock = new ManualClock();
    const boards = Array.from({ length: 1100 }, (_, i) => new FakeBoard(`b${i}`, { port: `tcp://bridge-${i}:2000`, standby: false, takeoverDelayMs: 3000 }));
    const session = new FakeSession(broker);
    // Each SUBACK waits for the test: how many SUBSCRIBEs are in flight at once, and what each holds.
    const waiting: Array<() => void> = [];
    let maxInFlight = 0;
    const packets: string[][] = [];
    const subscribed: string[] = [];
    const subscribe = session.subscribe.bind(session);
    session.subscribe = (topics) =>
      new Promise<void>((resolve) => {
        const list = typeof topics === 'string' ? [topics] : [...topics];
        packets.push(list);
        waiting.push(() => void subscribe(list).then(() => (subscribed.push(...list), resolve())));
        maxInFlight = Math.max(maxInFlight, waiting.length);
      });
    const published: string[] = [];
    const publish = session.publish.bind(session);
    session.publish = (topic, payload, options) => {
      published.push(`${topic} after ${subscribed.length} subscriptions`);
      return publish(topic, payload, options);
    };
    const ownership = new BoardOwnership({ gatewayId: 'gw-a', session, boards, clock, logger: new RecordingLogger() });
    const started = ownership.start();
    while (subscribed.length < 1 + 2 * 1100) {
      await settle();
      expect(published.filter((p) => p.startsWith('tether/gateways/gw-a/sync/'))).toEqual([]);
      for (const ack of waiting.splice(0)) ack();
      await settle();
    }
    await started;
    // The sync marker's own topic, then 4 x 256 boards and the last 76, each board's two topics together.
    expect(packets.map((p) => p.length)).toEqual([1, 512, 512, 512, 512, 152]);
    expect(packets[5]!.slice(0, 2)).toEqual([ownerTopics.owner('b1024'), ownerTopics.who('b1024')]);
    expect(new Set(packets.slice(1).flat())).toEqual(new Set(boards.flatMap((b) => [ownerTopics.owner(b.id), ownerTopics.who(b.id)])));
    expect(maxInFlight).toBe(4);
    const sync = published.filter((p) => p.startsWith('tether/gateways/gw-a/sync/'));
    expect(sync).toHaveLength(1);
    expect(sync[0]).toMatch(/ after 2201 subscriptions$/);
    ownership.stop();
  });

  it('a claim topic the broker refuses makes start() fail with it, and no sync marker goes out (no board is decided)', async () => {
    const broker = new TinyBroker();
    const clock = new ManualClock();
    const boards = Array.from({ length: 600 }, (_, i) => new FakeBoard(`b${i}`, { port: `tcp://bridge-${i}:2000`, standby: false, takeoverDelayMs: 0 }));
    const session = new FakeSession(broker);
    const subscribe = session.subscribe.bind(session);
    // As BrokerSession does when a SUBACK holds 0x80 for one filter of the packet.
    session.subscribe = async (topics) => {
      await subscribe(topics);
      if (topics.includes(ownerTopics.who('b300'))) throw new Error(`MQTT broker refused the subscription to ${ownerTopics.who('b300')}`);
    };
    const published: string[] = [];
    const publish = session.publish.bind(session);
    session.publish = (topic, payload, options) => (published.push(topic), publish(topic, payload, options));
    const ownership = new BoardOwnership({ gatewayId: 'gw-a', session, boards, clock, logger: new RecordingLogger() });
    await expect(ownership.start()).rejects.toThrow(`refused the subscription to ${ownerTopics.who('b300')}`);
    await settle();
    expect(published.filter((t) => t.includes('/sync/'))).toEqual([]);
    expect(boards.every((b) => b.calls.length === 0)).toBe(true);
    ownership.stop();
  });

  it('a board on a serial port (wired to this host alone) is claimed at once: nobody to ask or wait for', async () => {
    const broker = new TinyBroker();
    const clock = new ManualClock();
    const a = gateway(broker, clock, 'gw-a', new FakeBoard('b1', { port: '/dev/ttyACM0', standby: false, takeoverDelayMs: 3000 }));
    await a.ownership.start();
    await settle();
    await settle();
    expect(a.board.calls).toEqual(['acquire gw-a 1']);
    expect(broker.retained.has(ownerTopics.who('b1'))).toBe(false);
    a.ownership.stop();
  });

  it('a claim whose publish failed while the session stayed (or came back) up is tried again a second later', async () => {
    const broker = new TinyBroker();
    const clock = new ManualClock();
    const a = gateway(broker, clock, 'gw-a', new FakeBoard('b1', { port: '/dev/ttyACM0', standby: false, takeoverDelayMs: 3000 }));
    // The first owner-record publish fails (the connection dropped before its PUBACK, and the
    // session was up again before the failure arrived): no later 'up' will come to retry it.
    const publish = a.session.publish.bind(a.session);
    let failures = 1;
    a.session.publish = async (topic, payload, options) => {
      if (topic === ownerTopics.owner('b1') && failures-- > 0) throw new Error('connection closed before PUBACK');
      return publish(topic, payload, options);
    };
    await a.ownership.start();
    await settle();
    await settle();
    expect(a.board.calls).toEqual([]);
    clock.advance(999);
    await settle();
    expect(a.board.calls).toEqual([]);
    clock.advance(1);
    await settle();
    await settle();
    expect(a.board.calls).toHaveLength(1);
    expect(a.board.calls[0]).toMatch(/^acquire gw-a \d+$/);
    expect(a.ownership.phase('b1')).toBe('held');
    a.ownership.stop();
  });

  it('a standby takes the board only after its owner is gone for takeoverDelayMs; the old owner back stands by', async () => {
    const broker = new TinyBroker();
    const clock = new ManualClock();
    const a = gateway(broker, clock, 'gw-a', onBridge(false));
    await a.ownership.start();
    await settle();
    // No record at all: it asks who holds the board and waits the delay for an answer (a broker
    // node may not have the retained record), then claims epoch 1.
    expect(broker.retained.has(ownerTopics.owner('b1'))).toBe(false);
    clock.advance(2999);
    await settle();
    expect(a.board.calls).toEqual([]);
    clock.advance(1);
    await settle();
    expect(a.board.calls).toEqual(['acquire gw-a 1']);
    expect(a.ownership.phase('b1')).toBe('held');

    const b = gateway(broker, clock, 'gw-b', onBridge(true));
    await b.ownership.start();
    await settle();
    expect(b.ownership.phase('b1')).toBe('standby');
    clock.advance(60_000);
    await settle();
    expect(b.board.calls.filter((c) => c.startsWith('acquire'))).toEqual([]);

    a.ownership.stop();
    a.session.die('gw-a');
    await settle();
    clock.advance(2999);
    await settle();
    expect(b.board.calls.filter((c) => c.startsWith('acquire'))).toEqual([]);
    clock.advance(1);
    await settle();
    await settle();
    expect(b.board.calls.at(-1)).toBe('acquire gw-b 2 superseded');
    expect(b.ownership.claimOf('b1')?.epoch).toBe(2);
    expect(JSON.parse(broker.retained.get(ownerTopics.owner('b1'))!.toString())).toMatchObject({ gateway: 'gw-b', epoch: 2 });

    // gw-a restarted (a new instance, configured as the owner): gw-b holds a newer epoch and is alive.
    const a2 = gateway(broker, clock, 'gw-a', onBridge(false));
    await a2.ownership.start();
    await settle();
    await settle();
    clock.advance(60_000);
    await settle();
    expect(a2.ownership.phase('b1')).toBe('standby');
    expect(a2.board.calls).toEqual(['standBy held by gateway gw-b (epoch 2)']);
    expect(b.ownership.phase('b1')).toBe('held');
  });

  it('a holder that missed the new owner\'s record (not on its broker node) asks who holds the board at the first kick and lets go naming it', async () => {
    const broker = new TinyBroker();
    const clock = new ManualClock();
    const a = await ownerHolding(broker, clock);
    const b = await standbyStarted(broker, clock);
    // gw-a hears nothing for a while (its node lost its subscriptions' traffic): meanwhile gw-b
    // sees gw-a's gateway lost and takes the board with epoch 2.
    a.session.connected = false;
    void b.session.publish('homie/5/gw-a/$state', 'lost', { retain: true });
    await settle();
    clock.advance(3000);
    await settle();
    await settle();
    expect(b.ownership.phase('b1')).toBe('held');
    a.session.connected = true;
    expect(a.ownership.phase('b1')).toBe('held');
    // gw-b's board session takes the client id: gw-a's connection is closed right after it came up.
    a.board.mqtt.emit('up', { sessionPresent: true });
    a.board.mqtt.emit('down', 'connection closed by the broker');
    await settle();
    await settle();
    await settle();
    expect(a.ownership.phase('b1')).toBe('standby');
    expect(a.board.calls.at(-1)).toBe('release gateway gw-b took it (epoch 2)');
    expect(b.ownership.phase('b1')).toBe('held');
    expect(JSON.parse(broker.retained.get(ownerTopics.owner('b1'))!.toString())).toMatchObject({ gateway: 'gw-b', epoch: 2 });
    a.ownership.stop();
    b.ownership.stop();
  });

  it('the owner coming back within the delay keeps the board: the standby stays standby', async () => {
    const broker = new TinyBroker();
    const clock = new ManualClock();
    const a = await ownerHolding(broker, clock);
    const b = await standbyStarted(broker, clock);
    a.ownership.stop();
    a.session.die('gw-a');
    await settle();
    clock.advance(1000);
    // Restarted before the delay ran out: its earlier run held the board; it asks who holds it now,
    // nobody answers, and it claims it after the delay; gw-b's timer found gw-a alive again.
    const a2 = gateway(broker, clock, 'gw-a', onBridge(false));
    await a2.ownership.start();
    await settle();
    await settle();
    clock.advance(3000);
    await settle();
    await settle();
    expect(a2.board.calls).toEqual(['acquire gw-a 2']);
    clock.advance(5000);
    await settle();
    expect(b.board.calls.filter((c) => c.startsWith('acquire'))).toEqual([]);
    expect(b.ownership.phase('b1')).toBe('standby');
  });

  it('two owners claiming at once: the greater claim keeps it, the other lets go and does not claim again', async () => {
    const broker = new TinyBroker();
    const clock = new ManualClock();
    const a = gateway(broker, clock, 'gw-a', onBridge(false));
    const b = gateway(broker, clock, 'gw-b', onBridge(false));
    await Promise.all([a.ownership.start(), b.ownership.start()]);
    for (let i = 0; i < 5; i++) await settle();
    clock.advance(60_000);
    for (let i = 0; i < 5; i++) await settle();
    expect(b.ownership.phase('b1')).toBe('held');
    expect(a.ownership.phase('b1')).toBe('standby');
    expect(b.board.calls.filter((c) => c.startsWith('release'))).toEqual([]);
    // gw-a claimed epoch 1 too (or stood by at once): either way it never serves after gw-b's claim.
    expect(a.board.calls.at(-1)).toMatch(/^(release|standBy) /);
  });

  it('a holder answers "who holds it?" with its record, so a gateway whose broker node lost the retained record stands by', async () => {
    const broker = new TinyBroker();
    const clock = new ManualClock();
    const a = await ownerHolding(broker, clock);
    broker.retained.delete(ownerTopics.owner('b1')); // as RabbitMQ 3.10 on another node: no retained copy
    const b = gateway(broker, clock, 'gw-b', onBridge(false));
    await b.ownership.start();
    for (let i = 0; i < 4; i++) await settle();
    clock.advance(60_000);
    await settle();
    expect(b.ownership.phase('b1')).toBe('standby');
    expect(b.board.calls.filter((c) => c.startsWith('acquire'))).toEqual([]);
    expect(a.ownership.phase('b1')).toBe('held');
  });

  it("the old owner restarted on a node holding only its own old record asks, hears the holder's newer claim and stands by", async () => {
    const broker = new TinyBroker();
    const clock = new ManualClock();
    const b = gateway(broker, clock, 'gw-b', onBridge(true));
    await b.ownership.start();
    await settle();
    clock.advance(3000);
    await settle();
    expect(b.ownership.claimOf('b1')?.epoch).toBe(1);
    // As RabbitMQ 3.10 keeps retained messages per node: gw-a's node still has its own old record.
    broker.retained.set(ownerTopics.owner('b1'), Buffer.from(JSON.stringify({ gateway: 'gw-a', instance: 'old', epoch: 1 })));
    const a2 = gateway(broker, clock, 'gw-a', onBridge(false));
    await a2.ownership.start();
    for (let i = 0; i < 4; i++) await settle();
    clock.advance(60_000);
    await settle();
    expect(a2.ownership.phase('b1')).toBe('standby');
    expect(a2.board.calls.filter((c) => c.startsWith('acquire'))).toEqual([]);
    expect(b.ownership.phase('b1')).toBe('held');
  });

  it("an earlier run's own claim delivered live after a restart (queued in the persistent session) is no twin: the board is taken; a live claim made since this run began is a twin", async () => {
    for (const claimedSinceStart of [false, true]) {
      const broker = new TinyBroker();
      const clock = new ManualClock();
      const a = gateway(broker, clock, 'gw-a', onBridge(false));
      await a.ownership.start();
      await settle();
      // What a broker killed before delivering it hands this gateway's session on reconnect:
      // its own claim of an earlier run, as a live (not retained) message.
      const since = new Date(clock.wallNow() + (claimedSinceStart ? 500 : -60_000)).toISOString();
      a.session.deliver(ownerTopics.owner('b1'), Buffer.from(JSON.stringify({ gateway: 'gw-a', instance: 'earlier', epoch: 1, since })), false);
      for (let i = 0; i < 4; i++) await settle();
      clock.advance(3000);
      await settle();
      if (claimedSinceStart) {
        expect(a.ownership.phase('b1')).toBe('standby');
        expect(a.board.calls.filter((c) => c.startsWith('acquire'))).toEqual([]);
      } else {
        expect(a.ownership.phase('b1')).toBe('held');
        expect(a.board.calls).toContain('acquire gw-a 2');
      }
      a.ownership.stop();
    }
  });

  it('config: standby needs a session per board (not broker.sharedSession); takeoverDelayMs defaults to 3000', () => {
    const device = { id: 'b1', port: 'tcp://127.0.0.1:3333', standby: true };
    expect(validateConfig({ devices: [device] }).devices[0]).toMatchObject({ standby: true, takeoverDelayMs: 3000 });
    expect(() => validateConfig({ broker: { sharedSession: true }, devices: [device] })).toThrow(/standby needs a session per board/);
  });

  it('outranks: the epoch first, then the gateway id, then the instance', () => {
    const r = (gateway: string, epoch: number, instance = 'i') => ({ gateway, epoch, instance });
    expect(outranks(r('gw-a', 2), r('gw-b', 1))).toBe(true);
    expect(outranks(r('gw-b', 1), r('gw-a', 1))).toBe(true);
    expect(outranks(r('gw-a', 1), r('gw-b', 1))).toBe(false);
    expect(outranks(r('gw-a', 1, 'y'), r('gw-a', 1, 'x'))).toBe(true);
  });
});
