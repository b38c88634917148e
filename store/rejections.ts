/**
 * The rejections log as both SQL stores keep it (store/sqlite/rejections.ts, store/postgres/rejections.ts):
 * rows aggregated per facility, device, reason and minute, with a count, the first rejection kept as
 * the sample (payload cut to 4 KiB, detail to 1 KiB); and its rows mapped back to rejections.
 */
import { truncateUtf8 } from '../domain/json.ts';
import { MAX_REJECTION_DETAIL_BYTES, MAX_REJECTION_PAYLOAD_BYTES } from '../domain/limits.ts';
import type { RejectReason, Rejection } from '../domain/reading.ts';

/** Rejections of one device with one reason are aggregated per this span (one row, with a count). */
export const REJECTION_BUCKET_MS = 60_000;

/** One stored row of an append: its unique key (facility, device, reason, bucket) and values. */
export interface RejectionGroup {
  key: string;
  facilityId: string;
  deviceId: string;
  receivedAt: number;
  reason: string;
  detail: string | null;
  payload: string;
  bucket: number;
  count: number;
  last: number;
}

/** `rows` aggregated into the rows to upsert, in order of first appearance. */
export function groupRejections(rows: Rejection[]): RejectionGroup[] {
  const groups = new Map<string, { r: Rejection; count: number; last: number; bucket: number }>();
  for (const r of rows) {
    const bucket = Math.floor(r.receivedAt / REJECTION_BUCKET_MS);
    const key = `${r.facilityId}\u0000${r.deviceId}\u0000${r.reason}\u0000${bucket}`;
    const n = r.count ?? 1;
    const last = r.lastReceivedAt ?? r.receivedAt;
    const g = groups.get(key);
    if (g) {
      g.count += n;
      if (last > g.last) g.last = last;
    } else groups.set(key, { r, count: n, last, bucket });
  }
  return [...groups].map(([key, { r, count, last, bucket }]) => ({
    key,
    facilityId: r.facilityId,
    deviceId: r.deviceId,
    receivedAt: r.receivedAt,
    reason: r.reason,
    detail: r.detail === undefined ? null : truncateUtf8(r.detail, MAX_REJECTION_DETAIL_BYTES),
    payload: truncateUtf8(r.payload ?? '', MAX_REJECTION_PAYLOAD_BYTES),
    bucket,
    count,
    last,
  }));
}

/** A `rejections` row as both stores page it. */
export interface RejectionDbRow {
  id: number;
  facility_id: string;
  device_id: string;
  received_at: number;
  reason: string;
  detail: string | null;
  payload: string;
  count: number;
  last_received_at: number | null;
}

export const REJECTION_COLS = 'id, facility_id, device_id, received_at, reason, detail, payload, count, last_received_at';

/** A page entry: the row id (the paging cursor) and the rejection, with its count when it stands for more than one. */
export function toRejectionEntry(r: RejectionDbRow): { id: number; rejection: Rejection } {
  const out: Rejection = { facilityId: r.facility_id, deviceId: r.device_id, receivedAt: r.received_at, reason: r.reason as RejectReason, payload: r.payload };
  if (r.detail !== null) out.detail = r.detail;
  if (r.count > 1) {
    out.count = r.count;
    out.lastReceivedAt = r.last_received_at ?? r.received_at;
  }
  return { id: r.id, rejection: out };
}
