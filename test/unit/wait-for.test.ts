import { describe, expect, it } from 'vitest';
import { eventually, waitFor } from '../support/wait-for.ts';

// The test suite's one wait-for-condition helper (real time, short deadlines).

describe('waitFor', () => {
  it('resolves with the first truthy value, checking again until then', async () => {
    let calls = 0;
    const value = await waitFor(() => (++calls >= 3 ? { calls } : undefined), { what: 'three calls', intervalMs: 1 });
    expect(value).toEqual({ calls: 3 });
  });

  it('checks at once: a condition already met costs no wait', async () => {
    let calls = 0;
    expect(await waitFor(() => (++calls, 'yes'), { what: 'anything', intervalMs: 1000 })).toBe('yes');
    expect(calls).toBe(1);
  });

  it('takes async checks', async () => {
    let n = 0;
    expect(await waitFor(async () => ++n === 2, { what: 'the second check', intervalMs: 1 })).toBe(true);
  });

  it('fails after the deadline, naming what it waited for, the deadline and the detail', async () => {
    const started = performance.now();
    await expect(waitFor(() => false, { what: 'the board to be ready', timeoutMs: 50, detail: () => 'state: lost' })).rejects.toThrow(
      'timed out after 50 ms waiting for the board to be ready (state: lost)',
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(49);
  });

  it('a check that throws ends the wait with its error', async () => {
    let calls = 0;
    await expect(
      waitFor(
        () => {
          if (++calls === 2) throw new Error('the process exited');
          return false;
        },
        { what: 'never', intervalMs: 1 },
      ),
    ).rejects.toThrow('the process exited');
    expect(calls).toBe(2);
  });

  it('eventually retries an assertion until it passes', async () => {
    let calls = 0;
    await eventually(() => expect(++calls).toBe(3), { intervalMs: 1 });
    expect(calls).toBe(3);
  });

  it("eventually rethrows the assertion's own error at its deadline", async () => {
    await expect(eventually(() => expect('init').toBe('lost'), { timeoutMs: 30, intervalMs: 5 })).rejects.toThrow(/expected 'init' to be 'lost'[\s\S]*still failing after 30 ms/);
  });
});
