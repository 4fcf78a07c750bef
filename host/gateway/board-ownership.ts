import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { HOMIE_PREFIX, homieTopics } from '../homie/homie-topics.ts';
import type { Logger } from '../log/logger.ts';
import type { EventEmitter } from 'node:events';
import { SUBSCRIBE_TOPICS_PER_PACKET, type BrokerSession, type BrokerSessionEvents, type MessageInfo } from '../mqtt/broker-session.ts';
import type { Clock, TimerHandle, WallClock } from '../time/clock.ts';
import { forEachConcurrently } from './for-each-concurrently.ts';
import { TakeoverDetector, type TakeoverKick } from './takeover-detector.ts';

/**
 * Who serves a board: retained on `tether/boards/<board>/owner` by the gateway that claimed
 * it, before its board session takes the client id over. `instance` tells two runs (or two
 * daemons sharing a gateway id) apart; `epoch` only grows, so a stale gateway's word loses.
 */
export const ownerRecordSchema = z.object({
  gateway: z.string().min(1).max(64),
  instance: z.string().min(1).max(64),
  epoch: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  since: z.string().max(64).optional(),
});
export type OwnerRecord = z.infer<typeof ownerRecordSchema>;

/**
 * A board's MQTT client id: the same whichever gateway serves it (a Homie device id is unique
 * on the broker already). '.' cannot occur in a gateway id, so it never equals `tether-<gateway>`.
 */
export function boardClientId(board: string): string {
  return `tether.board.${board}`;
}


/** Where the owner records live: `tether/boards/<board>/owner`. */
export const OWNER_PREFIX = 'tether/boards';

export const ownerTopics = {
  /** Outside homie/5: the ownership protocol runs whether the Homie extension is on or not. */
  owner: (board: string) => `${OWNER_PREFIX}/${board}/owner`,
  /**
   * Non-retained "who holds it?": the holder answers by publishing its record again. For brokers
   * that do not replicate retained messages between nodes (RabbitMQ 3.10).
   */
  who: (board: string) => `${OWNER_PREFIX}/${board}/who`,
  /** A non-retained marker this gateway sends itself: when it comes back, the retained messages before it have arrived. */
  sync: (gateway: string, instance: string) => `tether/gateways/${gateway}/sync/${instance}`,
};

/**
 * The MQTT 5 User Properties every publish of a held board carries (consumers can drop a stale
 * gateway's). Frozen: the same for all of a claim's publishes, so their bytes are made once
 * (host/mqtt/packet-encoder.ts).
 */
export function ownerUserProperties(claim: OwnerRecord): Readonly<Record<string, string>> {
  return Object.freeze({ 'tether-owner': claim.gateway, 'tether-instance': claim.instance, 'tether-epoch': String(claim.epoch) });
}

/** true when `a` wins over `b`: the higher epoch; on a tie (two claims at once) the greater gateway id, then instance. */
export function outranks(a: OwnerRecord, b: OwnerRecord): boolean {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch;
  if (a.gateway !== b.gateway) return a.gateway > b.gateway;
  return a.instance > b.instance;
}

/** A board as BoardOwnership drives it (GatewayDevice). */
export interface OwnedBoard {
  readonly id: string;
  readonly settings: { readonly port: string; readonly standby: boolean; readonly takeoverDelayMs: number };
  /** Its current board session (replaced after a release): where a takeover is heard. */
  readonly mqtt: SessionEvents;
  acquire(claim: OwnerRecord, options: { superseded: boolean }): Promise<void>;
  release(reason: string): Promise<void>;
  standBy(reason: string): Promise<void>;
}

/** What is listened to on a BrokerSession. */
export type SessionEvents = Pick<EventEmitter<BrokerSessionEvents>, 'on' | 'off'>;

export type OwnershipSession = Pick<BrokerSession, 'connected' | 'subscribe' | 'publish'> & SessionEvents;

export interface BoardOwnershipOptions {
  gatewayId: string;
  /** The gateway's own session: records and the other gateways' `$state` are read and written there. */
  session: OwnershipSession;
  boards: OwnedBoard[];
  clock: Clock & WallClock;
  logger: Logger;
  /** Default: a random id per run. */
  instance?: string;
}

type Phase = 'waiting' | 'standby' | 'claiming' | 'held';

interface BoardState {
  board: OwnedBoard;
  phase: Phase;
  /** The winning record seen so far (see outranks) and when it arrived (message sequence). */
  best: OwnerRecord | null;
  bestSeq: number;
  /**
   * The best record is this gateway id's under another instance and arrived live (not a
   * retained replay): a second daemon with the same gateway id, running now, not an earlier run.
   */
  bestIsTwin: boolean;
  maxEpoch: number;
  /** Our own claim while claiming or held. */
  claim: OwnerRecord | null;
  timer: TimerHandle | null;
  /** Who we last said we stand by for (so it is logged once). */
  standingFor: string | null;
  detector: TakeoverDetector | null;
  /** "who holds it?" was asked since the last sync found no record. */
  asked: boolean;
}

/**
 * Claim-topic SUBSCRIBEs start() keeps in flight, each a call of SUBSCRIBE_TOPICS_PER_PACKET
 * topics, a board's two together (on a connected session; else they go with the connect).
 */
const SUBSCRIBES_IN_FLIGHT = 4;

/** After this many takeovers within the detector's window that no better claim explains, a held board is let go anyway. */
const MAX_UNEXPLAINED_KICKS = 3;
/** A claim whose publish failed while the session is (again) up is tried again after this long. */
const CLAIM_RETRY_MS = 1000;

/**
 * Which gateway serves which board when several gateways are configured with the same board
 * (README "More than one gateway"). The lock is the broker's: a board's session uses the same
 * client id whichever gateway serves it, so the broker lets one connection hold it. On top:
 *
 * - Before its board session connects, a gateway reads the retained owner record and the
 *   holder's `$state` (through its own session, after a round trip of a marker so the
 *   retained messages are in). Another gateway holds it and is alive: stand by (port closed,
 *   nothing queued or published for the board). Nobody, or this gateway's earlier run: claim
 *   it at once, unless the board is `standby`. The holder is gone (its Will said `lost`, or it
 *   stopped: `disconnected`, after its last record): claim it after `takeoverDelayMs`.
 * - Claiming publishes a record with a higher epoch, then connects the board session.
 * - A gateway that sees a record outranking its own claim, or (MQTT 5) whose board session is
 *   taken over (DISCONNECT 0x8E) while another claim outranks its own, lets go at once and
 *   says who took it; it never reconnects to take it back (no fight over the client id).
 */
export class BoardOwnership {
  readonly instance: string;
  /** When this run began (wall clock, as claims carry `since`). */
  private readonly startedAtWall: number;
  private readonly boards = new Map<string, BoardState>();
  /** The other gateways' `$state` and when it arrived (message sequence). */
  private readonly gateways = new Map<string, { state: string | undefined; seq: number }>();
  private readonly log: Logger;
  private seq = 0;
  private synced = false;
  private syncNonce: string | null = null;
  private running = false;
  /** When the gateway's own session was last taken over (a twin daemon: the gateway decides, not the boards). */
  private gatewayKickedAt: number | null = null;
  private readonly onUp = () => this.sync();
  private readonly onMessage = (topic: string, payload: Buffer, info: MessageInfo) => this.message(topic, payload, info);

  constructor(private readonly options: BoardOwnershipOptions) {
    this.instance = options.instance ?? randomUUID();
    this.startedAtWall = options.clock.wallNow();
    this.log = options.logger.child({ component: 'ownership' });
    for (const board of options.boards) {
      this.boards.set(board.id, {
        board,
        phase: 'waiting',
        best: null,
        bestSeq: 0,
        bestIsTwin: false,
        maxEpoch: 0,
        claim: null,
        timer: null,
        standingFor: null,
        detector: null,
        asked: false,
      });
    }
  }

  /** The phase of each board (for tests and the status). */
  phase(board: string): Phase | undefined {
    return this.boards.get(board)?.phase;
  }

  /** The claim this gateway holds a board with, if it does. */
  claimOf(board: string): OwnerRecord | null {
    const b = this.boards.get(board);
    return b?.phase === 'held' ? b.claim : null;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const { session, gatewayId } = this.options;
    session.on('message', this.onMessage);
    session.on('up', this.onUp);
    await session.subscribe(ownerTopics.sync(gatewayId, this.instance), 1);
    // Many boards' topics per SUBSCRIBE and a few SUBSCRIBEs in flight: a packet per topic,
    // one SUBACK after the other, was 2 x 9,900 round trips (docs/benchmarks-issue15-fleet.md).
    const topics = [...this.boards.keys()].flatMap((id) => [ownerTopics.owner(id), ownerTopics.who(id)]);
    const batches: string[][] = [];
    for (let i = 0; i < topics.length; i += SUBSCRIBE_TOPICS_PER_PACKET) batches.push(topics.slice(i, i + SUBSCRIBE_TOPICS_PER_PACKET));
    const failed = await forEachConcurrently(batches, SUBSCRIBES_IN_FLIGHT, (topics) => session.subscribe(topics, 1));
    if (failed) throw failed.err;
    if (session.connected) this.sync();
  }

  /** Stops deciding (the gateway stops its boards itself). */
  stop(): void {
    this.running = false;
    this.options.session.off('message', this.onMessage);
    this.options.session.off('up', this.onUp);
    for (const b of this.boards.values()) {
      this.cancelTimer(b);
      b.detector?.stop();
      b.detector = null;
    }
  }

  /** The gateway's own session was (or looks) taken over: while that goes on, boards do not give up on their own. */
  gatewayKicked(): void {
    this.gatewayKickedAt = this.options.clock.now();
  }

  /** The gateway's session was taken over by another daemon with the same gateway id: let every board go. */
  async releaseAll(reason: string): Promise<void> {
    this.running = false;
    await Promise.all(
      [...this.boards.values()].map(async (b) => {
        this.cancelTimer(b);
        if (b.phase === 'held' || b.phase === 'claiming') await this.letGo(b, reason);
        else if (b.phase === 'waiting') {
          // Not decided yet: it will not be now, so nothing is queued or opened for it.
          b.phase = 'standby';
          await b.board.standBy(reason);
        }
      }),
    );
  }

  /** Sends the marker; decisions wait until it is back (the retained records came before it). */
  private sync(): void {
    if (!this.running) return;
    this.synced = false;
    const nonce = randomUUID();
    this.syncNonce = nonce;
    const { session, gatewayId } = this.options;
    session.publish(ownerTopics.sync(gatewayId, this.instance), nonce, { qos: 1, retain: false }).catch((err: Error) => {
      // Not connected any more: the next 'up' sends another.
      this.log.debug({ err: err.message }, 'ownership sync marker not sent');
    });
  }

  private message(topic: string, payload: Buffer, info: MessageInfo): void {
    if (!this.running) return;
    const { gatewayId } = this.options;
    this.seq++;
    if (topic === ownerTopics.sync(gatewayId, this.instance)) {
      if (payload.toString() !== this.syncNonce) return;
      this.syncNonce = null;
      this.synced = true;
      for (const b of this.boards.values()) this.evaluate(b);
      return;
    }
    const parts = topic.split('/');
    // tether/boards/<id>/owner
    if (parts.length === 4 && `${parts[0]}/${parts[1]}` === OWNER_PREFIX && parts[3] === 'owner') {
      const b = this.boards.get(parts[2]!);
      if (b) this.record(b, payload, info.retain);
      return;
    }
    // tether/boards/<id>/who: the holder answers with its record (live to every node's subscribers).
    if (parts.length === 4 && `${parts[0]}/${parts[1]}` === OWNER_PREFIX && parts[3] === 'who') {
      const b = this.boards.get(parts[2]!);
      // Our own question (asked when kicked) is not for us to answer with a record it doubts.
      if (b?.phase === 'held' && b.claim && !info.retain && payload.toString() !== this.instance) {
        this.options.session.publish(ownerTopics.owner(b.board.id), JSON.stringify(b.claim), { qos: 1, retain: true }).catch(() => {});
      }
      return;
    }
    // homie/5/<gateway>/$state of a gateway named in a record
    if (parts.length === 4 && `${parts[0]}/${parts[1]}` === HOMIE_PREFIX && parts[3] === '$state') {
      const watched = this.gateways.get(parts[2]!);
      if (!watched) return;
      watched.state = payload.toString();
      watched.seq = this.seq;
      for (const b of this.boards.values()) if (b.best?.gateway === parts[2]) this.evaluate(b);
    }
  }

  private record(b: BoardState, payload: Buffer, retained: boolean): void {
    if (payload.length === 0) return; // cleared by hand
    let rec: OwnerRecord;
    try {
      rec = ownerRecordSchema.parse(JSON.parse(payload.toString()));
    } catch {
      this.log.warn({ device: b.board.id, payload: payload.toString().slice(0, 200) }, `ignored an owner record of ${b.board.id} that is not {gateway, instance, epoch}`);
      return;
    }
    b.maxEpoch = Math.max(b.maxEpoch, rec.epoch);
    if (!b.best || outranks(rec, b.best) || sameClaim(rec, b.best)) {
      b.best = rec;
      b.bestSeq = this.seq;
      // A live delivery of this gateway's own claim under another instance is a twin daemon,
      // unless the claim is older than this run: an earlier run's record queued for this
      // gateway's persistent session while it was away (a broker killed before delivering it).
      b.bestIsTwin = !retained && rec.gateway === this.options.gatewayId && rec.instance !== this.instance && !claimedBefore(rec, this.startedAtWall);
    }
    if (rec.gateway !== this.options.gatewayId) this.watchGateway(rec.gateway);
    if ((b.phase === 'held' || b.phase === 'claiming') && b.claim && outranks(b.best, b.claim)) {
      void this.letGo(b, `gateway ${b.best.gateway} took it (epoch ${b.best.epoch})`);
      return;
    }
    if (b.phase === 'held' && b.claim && !retained && !sameClaim(rec, b.claim)) {
      // A lower claim, live: its gateway did not see ours (not replicated to its node). Tell it.
      this.options.session.publish(ownerTopics.owner(b.board.id), JSON.stringify(b.claim), { qos: 1, retain: true }).catch(() => {});
    }
    this.evaluate(b);
  }

  private watchGateway(gateway: string): void {
    if (this.gateways.has(gateway)) return;
    this.gateways.set(gateway, { state: undefined, seq: 0 });
    // Its retained $state must be in before any decision: subscribe, then a fresh marker.
    this.synced = false;
    this.options.session.subscribe(homieTopics.state(gateway), 1).then(
      () => this.sync(),
      (err: Error) => this.log.warn({ gateway, err: err.message }, `cannot watch gateway ${gateway}: ${err.message}`),
    );
  }

  /** The holder is gone: its last word (Will `lost`, or `disconnected` on a stop) came after its record. */
  private holderGone(b: BoardState): boolean {
    const holder = b.best ? this.gateways.get(b.best.gateway) : undefined;
    if (!holder) return false;
    return (holder.state === 'lost' || holder.state === 'disconnected') && holder.seq > b.bestSeq;
  }

  private evaluate(b: BoardState, due = false): void {
    if (!this.running || !this.synced || b.phase === 'claiming' || b.phase === 'held') return;
    const { gatewayId } = this.options;
    const rec = b.best;
    // This gateway's earlier run counts as ours; a twin daemon running now does not.
    const ours = rec === null || (rec.gateway === gatewayId && !b.bestIsTwin);
    if (!ours && !this.holderGone(b)) {
      this.cancelTimer(b);
      this.standBy(b, rec!);
      return;
    }
    const { standby, takeoverDelayMs, port } = b.board.settings;
    // A board on a serial port is wired to this host alone: no other gateway can serve it, so
    // there is nobody to ask or wait for (only boards behind a tcp:// bridge move between gateways).
    if (!standby && !port.startsWith('tcp://')) {
      this.cancelTimer(b);
      void this.claim(b);
      return;
    }
    // This gateway's own record, but from an earlier run: another gateway may hold the board
    // with a record this broker node does not have. Ask too before taking it.
    const earlierRun = rec !== null && ours && rec.instance !== this.instance;
    if ((rec === null || earlierRun) && !b.asked) {
      // No record seen: maybe none, maybe not replicated to this broker node. Ask; a holder
      // answers within the takeover delay, which even an owner waits out in these cases.
      b.asked = true;
      this.options.session.publish(ownerTopics.who(b.board.id), this.instance, { qos: 1, retain: false }).catch(() => {});
    }
    if (due || (!standby && rec !== null && ours && !earlierRun) || takeoverDelayMs === 0) {
      this.cancelTimer(b);
      void this.claim(b);
      return;
    }
    if (b.timer !== null) return;
    const why = rec === null ? 'no gateway holds it' : ours ? 'this gateway held it last' : `gateway ${rec.gateway} (epoch ${rec.epoch}) is gone`;
    this.log.info({ device: b.board.id, delayMs: takeoverDelayMs }, `${b.board.id}: ${why}: taking it in ${takeoverDelayMs} ms unless its owner comes back`);
    b.timer = this.options.clock.setTimeout(() => {
      b.timer = null;
      this.evaluate(b, true);
    }, takeoverDelayMs);
  }

  private standBy(b: BoardState, holder: OwnerRecord): void {
    const key = `${holder.gateway}/${holder.instance}/${holder.epoch}`;
    if (b.phase === 'standby' && b.standingFor === key) return;
    b.phase = 'standby';
    b.standingFor = key;
    const text = `${b.board.id} is held by gateway ${holder.gateway} (epoch ${holder.epoch}): standing by`;
    // Configured as its owner: worth a warning (the other gateway took it while this one was away).
    if (b.board.settings.standby) this.log.info({ device: b.board.id, owner: holder.gateway, epoch: holder.epoch }, text);
    else this.log.warn({ device: b.board.id, owner: holder.gateway, epoch: holder.epoch }, `${text} (it took the board while this gateway was away)`);
    void b.board.standBy(`held by gateway ${holder.gateway} (epoch ${holder.epoch})`).catch((err: Error) => this.log.error({ device: b.board.id, err: err.message }, 'standing by failed'));
  }

  private async claim(b: BoardState): Promise<void> {
    const { gatewayId, session, clock } = this.options;
    const previous = b.best;
    const claim: OwnerRecord = { gateway: gatewayId, instance: this.instance, epoch: b.maxEpoch + 1, since: new Date(clock.wallNow()).toISOString() };
    b.phase = 'claiming';
    b.claim = claim;
    // Our own claim counts as seen: a simultaneous lower claim read before our echo must not beat it.
    b.maxEpoch = claim.epoch;
    b.best = claim;
    b.bestSeq = this.seq;
    b.bestIsTwin = false;
    try {
      await session.publish(ownerTopics.owner(b.board.id), JSON.stringify(claim), { qos: 1, retain: true });
    } catch (err) {
      b.phase = 'waiting';
      b.claim = null;
      this.log.warn({ device: b.board.id, err: (err as Error).message }, `${b.board.id}: claim not published; trying again once connected`);
      // The session may be up again already (its 'up' and sync came while this publish was
      // failing, and evaluate() skipped a board still 'claiming'): then no later 'up' would retry.
      if (this.running && session.connected && b.timer === null) {
        b.timer = clock.setTimeout(() => {
          b.timer = null;
          this.evaluate(b, true);
        }, CLAIM_RETRY_MS);
      }
      return;
    }
    if (b.phase !== 'claiming' || !this.running) return; // outranked meanwhile (letGo ran)
    if (b.best && outranks(b.best, claim)) {
      b.phase = 'waiting';
      b.claim = null;
      this.evaluate(b);
      return;
    }
    b.phase = 'held';
    const superseded = previous !== null && previous.gateway !== gatewayId;
    this.log.info(
      { device: b.board.id, epoch: claim.epoch, previous: previous?.gateway ?? null },
      `${b.board.id}: serving it (owner epoch ${claim.epoch}${previous && previous.gateway !== gatewayId ? `, taken from gateway ${previous.gateway}` : ''})`,
    );
    try {
      await b.board.acquire(claim, { superseded });
    } catch (err) {
      this.log.error({ device: b.board.id, err: (err as Error).message }, `${b.board.id}: could not start serving it: ${(err as Error).message}`);
    }
    this.listenForTakeover(b);
  }

  private listenForTakeover(b: BoardState): void {
    b.detector?.stop();
    b.detector = new TakeoverDetector(b.board.mqtt, { clock: this.options.clock, onKick: (kick) => this.takenOver(b, kick) });
  }

  /** The board session's client id was taken by another connection (or looks so: see TakeoverDetector). */
  private takenOver(b: BoardState, kick: TakeoverKick): void {
    if (b.phase !== 'held' || !b.claim) return;
    if (b.best && outranks(b.best, b.claim)) {
      void this.letGo(b, `gateway ${b.best.gateway} took it (epoch ${b.best.epoch})`);
      return;
    }
    // No claim outranks ours (yet): the loser of a simultaneous claim lets go when it reads ours.
    const twin = this.gatewayKickedAt !== null && this.options.clock.now() - this.gatewayKickedAt < 30_000;
    if (kick.count >= MAX_UNEXPLAINED_KICKS && !twin) {
      void this.letGo(b, `its session was taken over ${kick.count} times by a client that claims no ownership`);
      return;
    }
    this.log.warn({ device: b.board.id, kick: kick.kind, times: kick.count }, `${b.board.id}: its MQTT session looks taken over but no other gateway claims it: keeping it`);
    // Its record may not have reached this broker node (retained messages are per node on some
    // clusters): ask live. A holder answers with its record, which outranks ours: we let go then,
    // naming it, instead of kicking its session again.
    this.options.session.publish(ownerTopics.who(b.board.id), this.instance, { qos: 1, retain: false }).catch(() => {});
  }

  private async letGo(b: BoardState, reason: string): Promise<void> {
    this.cancelTimer(b);
    b.detector?.stop();
    b.detector = null;
    b.phase = 'standby';
    b.claim = null;
    b.standingFor = b.best ? `${b.best.gateway}/${b.best.instance}/${b.best.epoch}` : null;
    this.log.warn({ device: b.board.id, owner: b.best?.gateway ?? null, epoch: b.best?.epoch ?? null }, `${b.board.id}: ${reason}: letting it go (port closed, nothing more published for it)`);
    try {
      await b.board.release(reason);
    } catch (err) {
      this.log.error({ device: b.board.id, err: (err as Error).message }, `${b.board.id}: letting it go failed: ${(err as Error).message}`);
    }
  }

  private cancelTimer(b: BoardState): void {
    if (b.timer !== null) this.options.clock.clearTimeout(b.timer);
    b.timer = null;
  }
}

function sameClaim(a: OwnerRecord, b: OwnerRecord): boolean {
  return a.gateway === b.gateway && a.instance === b.instance && a.epoch === b.epoch;
}

/** The claim says it was made before `wallMs` (a claim without `since` cannot tell: false). */
function claimedBefore(rec: OwnerRecord, wallMs: number): boolean {
  if (rec.since === undefined) return false;
  const at = Date.parse(rec.since);
  return Number.isFinite(at) && at < wallMs;
}
