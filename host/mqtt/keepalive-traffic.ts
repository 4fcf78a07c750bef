/** How a live connection ended, when it was not our doing nor the broker's DISCONNECT. */
export type DropCause = 'closed' | 'half-open';

/**
 * The PINGREQ schedule the broker sessions of one path share (PathKeepalive), and what they
 * report back to it. A session pings after `intervalMs` of silence, whatever the keepalive it
 * announced in CONNECT (which stays its detection bound).
 */
export interface KeepaliveTraffic {
  /** The PINGREQ interval for this path now (ms). */
  readonly intervalMs: number;
  /** Calls `listener` with every new interval; returns the function that unsubscribes. */
  onIntervalChange(listener: (intervalMs: number) => void): () => void;
  /** A PINGREQ sent after `idleMs` of silence both ways was answered. */
  survived(idleMs: number): void;
  /** A live connection was cut after `idleMs` of silence both ways (half-open: when its unanswered PINGREQ was sent). */
  cut(idleMs: number, cause: DropCause): void;
}
