/**
 * The acknowledgement window of one consumer connection (broker/consumer.ts): many messages in flight
 * at once, each PUBACKed only after its readings are durable, and in the order the PUBLISHes arrived
 * (MQTT 3.1.1 section 4.6: a client sends PUBACKs in the order it received the QoS 1 PUBLISHes).
 *
 * mqtt.js 5 handles one incoming packet at a time per connection and sends the PUBACK when
 * `handleMessage` calls back without an error, so acknowledging after commit through that callback
 * leaves one message in flight per connection and group commit has nothing to group. Instead the
 * consumer calls back as soon as a message is admitted here, with `NO_AUTO_ACK` (an error: mqtt.js then
 * sends no PUBACK and reads the next packet), and this window sends the PUBACK itself once the message
 * is processed and every message received before it on the connection is acknowledged.
 *
 * Back-pressure: a message is admitted only while fewer than `messages` are unacknowledged and the
 * payloads being processed stay under `bytes` (one message is always admitted into an empty window).
 * Until then the consumer holds mqtt.js' callback, so mqtt.js stops reading the socket and TCP pushes
 * back on the broker.
 *
 * A lost connection (`reset`) ends the window's generation: nothing received on it is acknowledged any
 * more (a PUBACK on the next connection could acknowledge another message with the same id); the
 * broker redelivers the persistent session's unacknowledged messages after the reconnect, and those
 * whose readings did land are stored once (duplicates).
 */

/** What the consumer passes to mqtt.js' `handleMessage` callback: no automatic PUBACK. */
export const NO_AUTO_ACK: Error = Object.freeze(new Error('acknowledged by the consumer after commit')) as Error;

export interface AckWindowLimits {
  /** Unacknowledged messages at most (processing, or processed behind an earlier one). */
  messages: number;
  /** Payload bytes being processed at most. */
  bytes: number;
}

/** Defaults per connection: the broker's own in-flight limit is usually lower (Mosquitto: 20). */
export const DEFAULT_ACK_WINDOW: AckWindowLimits = { messages: 1000, bytes: 8 * 1024 * 1024 };

/** One admitted message: settle it exactly once. */
export interface AckTicket {
  /** Processed (stored, refused or ignored): PUBACK in turn. */
  done(): void;
  /** Not processed (storage failed): no PUBACK, and the window is reset (the consumer drops the connection). */
  fail(): void;
}

interface Entry {
  /** Packet id to acknowledge; undefined for QoS 0 (nothing to send, kept for the order). */
  messageId: number | undefined;
  bytes: number;
  gen: number;
  settled: boolean;
}

interface Waiter {
  messageId: number | undefined;
  bytes: number;
  start: (ticket: AckTicket) => void;
  drop: () => void;
}

export class AckWindow {
  private gen = 0;
  private queue: Entry[] = [];
  private processingBytes = 0;
  private waiting: Waiter[] = [];
  private idlers: (() => void)[] = [];

  constructor(
    /** Sends the PUBACK on the current connection (called only for the current generation). */
    private readonly sendPuback: (messageId: number) => void,
    private readonly limits: AckWindowLimits = DEFAULT_ACK_WINDOW,
  ) {}

  /** Messages received and not yet acknowledged on the current connection. */
  get unacked(): number {
    return this.queue.length;
  }

  /**
   * Takes a message of `bytes` payload: `start(ticket)` runs once it fits (at once, or after earlier
   * ones are processed); `drop()` instead if the connection is lost before that.
   */
  admit(messageId: number | undefined, bytes: number, start: (ticket: AckTicket) => void, drop: () => void): void {
    const w: Waiter = { messageId, bytes, start, drop };
    if (this.waiting.length === 0 && this.fits(bytes)) this.begin(w);
    else this.waiting.push(w);
  }

  /** The connection is lost: nothing received on it is acknowledged; messages not yet started are dropped. */
  reset(): void {
    this.gen++;
    this.queue = [];
    for (const w of this.waiting.splice(0)) w.drop();
    this.wakeIdle();
  }

  /** Resolves once every message started on the current connection is acknowledged (or the connection lost). */
  idle(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idlers.push(resolve));
  }

  private wakeIdle(): void {
    if (this.queue.length === 0) for (const r of this.idlers.splice(0)) r();
  }

  private fits(bytes: number): boolean {
    if (this.queue.length === 0) return true;
    return this.queue.length < this.limits.messages && this.processingBytes + bytes <= this.limits.bytes;
  }

  private begin(w: Waiter): void {
    const e: Entry = { messageId: w.messageId, bytes: w.bytes, gen: this.gen, settled: false };
    this.queue.push(e);
    this.processingBytes += e.bytes;
    w.start({ done: () => this.settle(e, true), fail: () => this.settle(e, false) });
  }

  private settle(e: Entry, ok: boolean): void {
    if (e.settled) return;
    e.settled = true;
    this.processingBytes -= e.bytes;
    if (!ok) {
      if (e.gen === this.gen) this.reset();
    } else if (e.gen === this.gen) {
      while (this.queue.length > 0 && this.queue[0].settled) {
        const head = this.queue.shift()!;
        if (head.messageId !== undefined) this.sendPuback(head.messageId);
      }
    }
    while (this.waiting.length > 0 && this.fits(this.waiting[0].bytes)) this.begin(this.waiting.shift()!);
    this.wakeIdle();
  }
}
