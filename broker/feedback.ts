/**
 * The feedback topic (SPEC "MQTT interface"): MQTT 3.1.1 has no negative acknowledgement, so each
 * rejection is also published to `facilities/{facilityId}/devices/{deviceId}/feedback`, one message per
 * refused (or partly refused) PUBLISH: a JSON array of `{ seq, reason, detail }` (seq null when it
 * could not be read). The device may subscribe to it (its own subtree, see acl.ts).
 */
import type { IngestResult } from './pipeline.ts';

export interface Feedback {
  seq: number | null;
  reason: string;
  detail: string;
}

const MAX_FEEDBACK_DETAIL = 300;

export function feedbackTopic(facilityId: string, deviceId: string): string {
  return `facilities/${facilityId}/devices/${deviceId}/feedback`;
}

/** The feedback message body for `items`. */
export function feedbackPayload(items: Feedback[]): Buffer {
  return Buffer.from(JSON.stringify(items.map((i) => ({ seq: i.seq, reason: i.reason, detail: i.detail.slice(0, MAX_FEEDBACK_DETAIL) }))));
}

/** The feedback items of a submit's result (empty when nothing was rejected). */
export function feedbackOf(res: IngestResult): Feedback[] {
  return res.rejected.map((r) => ({ seq: r.seq ?? null, reason: r.reason, detail: r.detail ?? '' }));
}
