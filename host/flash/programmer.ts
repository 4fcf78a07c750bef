import { systemClock, type Clock, type TimerHandle } from '../time/clock.ts';
import type { ByteLink } from './byte-link.ts';
import { FlashError } from './errors.ts';
import * as stk from './stk500v1.ts';

export interface ProgrammerTimeouts {
  /** GET_SYNC tries before giving up with 'no-sync'. Default 10. */
  syncAttempts?: number;
  /** How long each GET_SYNC waits for INSYNC OK. Default 200 ms. */
  syncTimeoutMs?: number;
  /**
   * After the sync, how long answers to earlier (late) GET_SYNCs are awaited and dropped
   * so they are not taken for the next answer. Default 50 ms.
   */
  syncSettleMs?: number;
  /** How long any other command waits for its full answer. Default 1000 ms. */
  commandTimeoutMs?: number;
}

export interface ProgrammerOptions extends ProgrammerTimeouts {
  clock?: Clock;
}

export const DEFAULT_TIMEOUTS: Required<ProgrammerTimeouts> = {
  syncAttempts: 10,
  syncTimeoutMs: 200,
  syncSettleMs: 50,
  commandTimeoutMs: 1000,
};

const hexBytes = (bytes: Uint8Array, max = 8) =>
  Array.from(bytes.subarray(0, max), (b) => b.toString(16).padStart(2, '0')).join(' ') + (bytes.length > max ? ' ...' : '');

/**
 * One STK500v1 session with a bootloader over a ByteLink: each call sends one command and
 * waits (with a timeout) for its answer. It neither opens nor resets the port.
 */
export class Stk500v1Programmer {
  private readonly clock: Clock;
  private readonly timeouts: Required<ProgrammerTimeouts>;
  private readonly unsubscribe: () => void;
  private received: Uint8Array = new Uint8Array(0);
  /** Called when bytes arrive while a command waits. */
  private onReceive: (() => void) | null = null;

  constructor(
    private readonly link: ByteLink,
    options: ProgrammerOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    const { clock: _clock, ...rest } = options;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)) };
    this.unsubscribe = link.onData((bytes) => {
      const joined = new Uint8Array(this.received.length + bytes.length);
      joined.set(this.received);
      joined.set(bytes, this.received.length);
      this.received = joined;
      this.onReceive?.();
    });
  }

  /** Stops listening to the link (the link itself stays open). */
  dispose(): void {
    this.unsubscribe();
    this.onReceive = null;
  }

  /**
   * GET_SYNC until the bootloader answers INSYNC OK. Anything else the port says meanwhile
   * (an application still running, line noise) is skipped.
   */
  async sync(): Promise<void> {
    const { syncAttempts, syncTimeoutMs, syncSettleMs } = this.timeouts;
    let heard = 0;
    for (let attempt = 1; attempt <= syncAttempts; attempt++) {
      this.received = new Uint8Array(0);
      await this.write(stk.getSync());
      const found = await this.waitFor(() => stk.findSyncAnswer(this.received) >= 0, syncTimeoutMs);
      if (found) {
        await this.sleep(syncSettleMs);
        this.received = new Uint8Array(0);
        return;
      }
      heard += this.received.length;
    }
    const tail = heard > 0 ? `; the port sent ${heard} other byte(s), so something else is running there (an application, or a bootloader at another baud rate)` : '';
    throw new FlashError(
      'no-sync',
      `no answer from the bootloader to ${syncAttempts} GET_SYNC attempts of ${syncTimeoutMs} ms each${tail}`,
    );
  }

  /**
   * READ_SIGN. Call it right after sync(): a GET_SYNC that timed out may still be answered
   * (a slow or busy host), and since the bootloader answers in order, any such late
   * INSYNC OK pairs come before this answer, which starts INSYNC 0x1E; they are skipped.
   */
  async readSignature(): Promise<Uint8Array> {
    return await this.transact(stk.readSignature(), { skipSyncAnswers: true });
  }

  async enterProgrammingMode(): Promise<void> {
    await this.transact(stk.enterProgMode());
  }

  /** Optiboot starts the application shortly after this. */
  async leaveProgrammingMode(): Promise<void> {
    await this.transact(stk.leaveProgMode());
  }

  /** Writes one flash page (a whole page: Optiboot always programs a full page). */
  async writePage(byteAddress: number, data: Uint8Array): Promise<void> {
    const label = `0x${byteAddress.toString(16).toUpperCase().padStart(4, '0')}`;
    await this.transact(stk.loadAddress(byteAddress));
    await this.transact(stk.progPage(data, label));
  }

  async readPage(byteAddress: number, length: number): Promise<Uint8Array> {
    const label = `0x${byteAddress.toString(16).toUpperCase().padStart(4, '0')}`;
    await this.transact(stk.loadAddress(byteAddress));
    return await this.transact(stk.readPage(length, label));
  }

  /** Sends one command and resolves with its answer's payload. */
  async transact(cmd: stk.Stk500Command, options: { skipSyncAnswers?: boolean } = {}): Promise<Uint8Array> {
    this.received = new Uint8Array(0);
    await this.write(cmd);
    let result: stk.AnswerParse = { status: 'incomplete' };
    const done = await this.waitFor(() => {
      if (options.skipSyncAnswers) this.received = stk.skipSyncAnswers(this.received);
      result = stk.parseAnswer(cmd, this.received);
      return result.status !== 'incomplete';
    }, this.timeouts.commandTimeoutMs);
    const answer = result as stk.AnswerParse;
    if (!done || answer.status === 'incomplete') {
      const got = this.received.length > 0 ? ` (got ${this.received.length} of ${cmd.answerBytes + 2} bytes: ${hexBytes(this.received)})` : '';
      throw new FlashError('timeout', `no answer to ${cmd.name} within ${this.timeouts.commandTimeoutMs} ms${got}`);
    }
    switch (answer.status) {
      case 'ok':
        this.received = new Uint8Array(0);
        return answer.payload;
      case 'nosync':
        throw new FlashError('protocol', `the bootloader lost sync at ${cmd.name} (it answered NOSYNC)`);
      case 'failed':
        throw new FlashError('protocol', `the bootloader refused ${cmd.name} (it answered FAILED)`);
      case 'invalid':
        throw new FlashError('protocol', `unexpected answer to ${cmd.name}: ${answer.reason} (${hexBytes(this.received)})`);
    }
  }

  private async write(cmd: stk.Stk500Command): Promise<void> {
    try {
      await this.link.write(cmd.bytes);
    } catch (err) {
      throw new FlashError('port-error', `cannot send ${cmd.name}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Resolves true as soon as `check()` holds (checked now and on every chunk), false after `ms`. */
  private waitFor(check: () => boolean, ms: number): Promise<boolean> {
    if (check()) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      let timer: TimerHandle | undefined = undefined;
      const finish = (value: boolean) => {
        this.onReceive = null;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        resolve(value);
      };
      this.onReceive = () => {
        if (check()) finish(true);
      };
      timer = this.clock.setTimeout(() => finish(false), ms);
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimeout(resolve, ms));
  }
}
