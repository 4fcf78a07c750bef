import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

/**
 * What Node's TCP handle offers for a write (its StreamBase): writeBuffer() tries the kernel at
 * once (uv_try_write) and queues only what the kernel did not take, behind `req`.
 */
interface StreamHandle {
  writeBuffer(req: WriteReq, data: Uint8Array): number;
  readonly writeQueueSize: number;
}

/** Node's WriteWrap, plus the fields its completion reads. */
interface WriteReq {
  handle: StreamHandle | null;
  oncomplete: (this: WriteReq, status: number) => void;
  /** Kept alive while the kernel has not taken all of it (libuv writes from it, no copy). */
  buffer: Uint8Array | null;
  socket: Socket | null;
}

type WriteWrapClass = new () => WriteReq;

/**
 * Node's WriteWrap class (the request object a stream handle's write takes), from the
 * `stream_wrap` binding that process.binding() still lists; null where it is gone or where it
 * would print a deprecation warning (--pending-deprecation): then every write goes through
 * socket.write().
 */
function loadWriteWrap(): WriteWrapClass | null {
  const pending =
    process.execArgv.includes('--pending-deprecation') ||
    (process.env.NODE_OPTIONS ?? '').includes('--pending-deprecation') ||
    process.env.NODE_PENDING_DEPRECATION === '1';
  if (pending) return null;
  try {
    const binding = (process as unknown as { binding(name: string): { WriteWrap?: WriteWrapClass } }).binding('stream_wrap');
    return typeof binding.WriteWrap === 'function' ? binding.WriteWrap : null;
  } catch {
    return null;
  }
}

const WriteWrap = loadWriteWrap();

/** Completion of a write the kernel did not take whole: an error ends the socket as socket.write() would. */
function onComplete(this: WriteReq, status: number): void {
  const socket = this.socket;
  this.buffer = null;
  this.socket = null;
  this.handle = null;
  if (status < 0 && socket !== null && !socket.destroyed) socket.destroy(writeError(status));
}

/** The error socket.write() would report for a failed write (`write EPIPE`, code 'EPIPE'). */
function writeError(status: number): Error {
  let code: string;
  try {
    code = getSystemErrorName(status);
  } catch {
    code = `E${-status}`;
  }
  return Object.assign(new Error(`write ${code}`), { errno: status, code, syscall: 'write' });
}

/**
 * The request of the last write that the kernel took whole, for the next write of any socket:
 * such a request is done with when writeBuffer() returns (one for the whole process, none per
 * socket). A write the kernel did not take whole keeps its own until it completes.
 */
let idleReq: WriteReq | null = null;

/** Whether this process can write directly at all (false: directWrite() always returns false). */
export const directWriteAvailable = WriteWrap !== null;

/**
 * Writes a small buffer straight to a socket's handle: the one thing socket.write() does that
 * matters for a 14-byte PING (the handle's writeBuffer, which hands it to the kernel at once)
 * without the rest around it (the Writable stream's state, a WriteWrap object, the callback and
 * the nextTick after each write): every board writes a PING a second, and that path was the
 * largest part of the daemon's CPU at thousands of boards (issue 15).
 *
 * Only when nothing is queued before the bytes (in the stream or in libuv), so the order on the
 * wire is the order of the writes; otherwise, and wherever the handle or Node's WriteWrap is not
 * there, it returns false, nothing was written, and the caller uses socket.write(). A write the
 * kernel did not take whole stays queued in libuv behind its own request (later writes see the
 * queue and go through socket.write(), behind it; end() waits for it), and its bytes must not
 * change until it is done: directWriteQueued() says so, as writableLength does for
 * socket.write(). A failed write destroys the socket with the error socket.write() would give.
 */
export function directWrite(socket: Socket, bytes: Uint8Array): boolean {
  if (WriteWrap === null) return false;
  const handle = (socket as unknown as { _handle?: Partial<StreamHandle> | null })._handle;
  if (handle === null || handle === undefined || typeof handle.writeBuffer !== 'function') return false;
  if (socket.writableLength > 0 || (handle.writeQueueSize ?? 1) > 0 || socket.destroyed || !socket.writable || socket.connecting) return false;
  const req = idleReq ?? new WriteWrap();
  idleReq = null;
  req.handle = handle as StreamHandle;
  req.oncomplete = onComplete;
  req.socket = socket;
  req.buffer = null;
  const err = handle.writeBuffer(req, bytes);
  if (err === 0 && handle.writeQueueSize! > 0) {
    // The kernel took part of it: the rest is queued in libuv behind this request until onComplete.
    req.buffer = bytes;
    return true;
  }
  req.socket = req.handle = null;
  idleReq = req;
  // Refused at the first try: fail the socket as socket.write() would.
  if (err !== 0) socket.destroy(writeError(err));
  return true;
}

/** Bytes of `socket` queued in libuv (by direct writes or others) and not yet taken by the kernel. */
export function directWriteQueued(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: Partial<StreamHandle> | null })._handle;
  return handle?.writeQueueSize ?? 0;
}
