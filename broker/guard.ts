/**
 * Packet-size guard in front of aedes. aedes' mqtt-packet parser buffers the whole declared remaining
 * length of a packet before it looks at it (aedes issue #831), so a client declaring 10 MB makes the
 * broker hold 10 MB. This guard follows the MQTT fixed headers in the byte stream as aedes consumes it
 * and destroys the socket as soon as a header declares more than `maxPacketBytes`, or a PUBLISH
 * declares a topic longer than `maxTopicBytes` — before the body is read.
 *
 * How: aedes reads its connection in paused mode, only through `conn.read(null)`; we wrap that one
 * method on the socket instance, so every byte aedes gets passes the header scanner (no extra stream,
 * no copy). A socket that is dropped returns no data to aedes; its 'close' makes aedes clean up.
 */
import type { Duplex } from 'node:stream';

export interface GuardLimits {
  maxPacketBytes: number;
  maxTopicBytes: number;
}

export type Violation = 'packet_too_large' | 'topic_too_long' | 'malformed_header';

const enum S {
  Type,
  Length,
  TopicHi,
  TopicLo,
  Body,
}

/** Incremental scanner of MQTT fixed headers; `feed` returns a violation or undefined. */
export class HeaderScanner {
  private state = S.Type;
  private type = 0;
  private length = 0;
  private mult = 1;
  private lengthBytes = 0;
  private remaining = 0;
  private topicHi = 0;
  /** Declared remaining length of the packet that violated a limit (for logs and tests). */
  declared = 0;

  constructor(private readonly limits: GuardLimits) {}

  feed(buf: Buffer): Violation | undefined {
    let i = 0;
    const n = buf.length;
    while (i < n) {
      switch (this.state) {
        case S.Body: {
          const take = Math.min(this.remaining, n - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = S.Type;
          break;
        }
        case S.Type:
          this.type = buf[i++] >> 4;
          this.length = 0;
          this.mult = 1;
          this.lengthBytes = 0;
          this.state = S.Length;
          break;
        case S.Length: {
          const b = buf[i++];
          this.length += (b & 0x7f) * this.mult;
          this.mult *= 128;
          this.lengthBytes++;
          if (b & 0x80) {
            if (this.lengthBytes >= 4) return 'malformed_header';
            break;
          }
          if (this.length > this.limits.maxPacketBytes) {
            this.declared = this.length;
            return 'packet_too_large';
          }
          this.remaining = this.length;
          if (this.remaining === 0) this.state = S.Type;
          else if (this.type === 3 && this.remaining >= 2) this.state = S.TopicHi;
          else this.state = S.Body;
          break;
        }
        case S.TopicHi:
          this.topicHi = buf[i++];
          this.remaining--;
          this.state = S.TopicLo;
          break;
        case S.TopicLo: {
          const topicLen = this.topicHi * 256 + buf[i++];
          this.remaining--;
          if (topicLen > this.limits.maxTopicBytes) {
            this.declared = topicLen;
            return 'topic_too_long';
          }
          this.state = this.remaining === 0 ? S.Type : S.Body;
          break;
        }
      }
    }
    return undefined;
  }
}

/**
 * Installs the guard on `socket`. `onViolation` is called once, before the socket is destroyed.
 */
export function guardSocket(socket: Duplex, limits: GuardLimits, onViolation: (v: Violation, declared: number) => void): void {
  const scanner = new HeaderScanner(limits);
  const read = socket.read.bind(socket);
  let dropped = false;
  socket.read = function guardedRead(size?: number) {
    if (dropped) return null;
    const chunk = read(size) as Buffer | string | null;
    if (chunk === null || typeof chunk === 'string' || chunk.length === 0) return chunk;
    const v = scanner.feed(chunk);
    if (v) {
      dropped = true;
      try {
        onViolation(v, scanner.declared);
      } finally {
        socket.destroy();
      }
      return null;
    }
    return chunk;
  };
}
