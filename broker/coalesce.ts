/**
 * Write coalescing for broker sockets. mqtt-packet writes a PUBACK as three small `write` calls, and
 * when a group commit lands the acknowledgements of a whole batch are written at once: hundreds of
 * chunks, each going through the stream machinery and into one big `writev`. On the broker that
 * was ~15% of the event loop under load (raw aedes pays it too: ~26% in its profile).
 *
 * `coalesceWrites(socket)` collects what is written during one tick and hands it to the socket as a
 * single buffer on the next tick (callbacks are called when that write completes). Order is kept,
 * and `end`/`destroy()` first pass on what is pending, so a CONNACK written just before a refusal
 * still leaves. The return value of `write` keeps the socket's back-pressure signal (false once the
 * socket's own buffer is past its high-water mark), which aedes uses to wait for 'drain'.
 */
import type { Duplex } from 'node:stream';

type Callback = (err?: Error | null) => void;

export function coalesceWrites(socket: Duplex): void {
  const write = socket.write.bind(socket) as (chunk: Buffer, cb?: Callback) => boolean;
  const end = socket.end.bind(socket) as (...args: unknown[]) => Duplex;
  const destroy = socket.destroy.bind(socket);
  let parts: Buffer[] = [];
  let callbacks: Callback[] = [];
  let scheduled = false;

  function flush(): void {
    scheduled = false;
    if (parts.length === 0) return;
    const buf = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    const cbs = callbacks;
    parts = [];
    callbacks = [];
    if (socket.destroyed) {
      const err = new Error('socket closed before the write');
      for (const cb of cbs) cb(err);
      return;
    }
    if (cbs.length === 0) write(buf);
    else write(buf, (err) => cbs.forEach((cb) => cb(err)));
  }

  const coalesced = (chunk: unknown, encoding?: unknown, cb?: unknown): boolean => {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : typeof chunk === 'string'
        ? Buffer.from(chunk, (encoding as BufferEncoding | undefined) ?? 'utf8')
        : Buffer.from(chunk as Uint8Array);
    parts.push(buf);
    if (typeof cb === 'function') callbacks.push(cb as Callback);
    if (!scheduled) {
      scheduled = true;
      process.nextTick(flush);
    }
    return socket.writableLength < socket.writableHighWaterMark;
  };
  socket.write = coalesced as Duplex['write'];
  socket.end = ((...args: unknown[]) => {
    flush();
    return end(...args);
  }) as Duplex['end'];
  socket.destroy = ((err?: Error) => {
    // An unwrapped socket would have written these already (writes go out at once): so do we, even
    // when aedes destroys with an error right after a refusing CONNACK.
    try {
      flush();
    } catch {
      // The socket is failing anyway.
    }
    return destroy(err);
  }) as Duplex['destroy'];
}
