/**
 * Size and time limits on what devices send, declared once (SPEC "Ingestion"). The reading schema
 * (domain/reading.ts), the broker and the stores read them from here.
 */

/** An MQTT reading payload is refused above this many bytes (`payload_too_large`). */
export const MAX_PAYLOAD_BYTES = 64 * 1024;
/** Readings in one message (a JSON array) at most. */
export const MAX_READINGS_PER_MESSAGE = 500;
/** A reading's `ts` may be this far ahead of the broker's clock. */
export const MAX_FUTURE_MS = 5 * 60 * 1000;
/** A stored rejection keeps at most this many UTF-8 bytes of the payload that caused it. */
export const MAX_REJECTION_PAYLOAD_BYTES = 4096;
/** A stored rejection's detail is cut to this many UTF-8 bytes. */
export const MAX_REJECTION_DETAIL_BYTES = 1024;
