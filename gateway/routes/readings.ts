/** A facility's readings (normalised units, late flag from the oracle's evidence) and rejections. */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, requireRole } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import { FacilityParams, ReadingDetail, ReadingList, ReadingParams, ReadingsQuery, RejectionList, RejectionsQuery, errorResponses } from '../schemas.ts';
import { DEFAULT_PAGE, compareKeys, decodeCursor, encodeCursor, pageOf, type PageKey } from '../paging.ts';
import { MAX_LIST_LIMIT, type ReadingFilter, type ReadingStore } from '../../store/types.ts';
import { readingKeyText, type Reading, type ReadingView } from '../../domain/reading.ts';
import { iso, parseTimeQuery } from '../format.ts';
import { isVoided } from '../../oracle/voids.ts';

function readingView(r: Reading, late: boolean, voided = false): ReadingView {
  return {
    deviceId: r.deviceId,
    seq: r.seq,
    ts: iso(r.ts),
    metric: r.metric,
    value: r.value,
    unit: r.unit,
    ...(r.reset ? { reset: true } : {}),
    ...(late ? { late: true } : {}),
    ...(voided ? { voided: true } : {}),
  };
}

/** A reading's place in the listing: ts, device id, seq, all descending. */
const readingKey = (r: Reading): PageKey => [r.ts, r.deviceId, r.seq];

type ListBase = Omit<ReadingFilter, 'from' | 'to' | 'limit'>;

/**
 * What one page of the listing is cut from: every reading after `after` in key order (or from the
 * newest) down to at least `limit` of them, and at least one more when more exist, so that `next` is
 * given exactly when there is a next page. A store answers at most MAX_LIST_LIMIT rows, newest ts
 * first (in any order within a millisecond), so an answer that is cut short may hold only part of its
 * oldest millisecond: that millisecond is then read again whole (per device when even that is cut:
 * many devices reporting on the same millisecond), and only whole milliseconds make up the page. So
 * a page is always a prefix of the key order: no reading is skipped or served twice across pages,
 * readings with equal ts included. (One device with more than MAX_LIST_LIMIT readings on a single
 * millisecond is beyond what the store's listing can page through.)
 */
async function readingsAfter(
  store: Pick<ReadingStore, 'list'>,
  devices: () => string[],
  base: ListBase,
  from: number | undefined,
  to: number | undefined,
  limit: number,
  after: PageKey | undefined,
): Promise<Reading[]> {
  const cap = MAX_LIST_LIMIT;
  const wholeMs = async (ms: number): Promise<Reading[]> => {
    const rows = await store.list({ ...base, from: ms, to: ms + 1, limit: cap });
    if (rows.length < cap || base.deviceId !== undefined) return rows;
    const per = await Promise.all(devices().map((deviceId) => store.list({ ...base, deviceId, from: ms, to: ms + 1, limit: cap })));
    return per.flat();
  };
  const out: Reading[] = [];
  let upper = to;
  if (after) {
    // The rest of the cursor's millisecond (readings sharing its ts), then older ones.
    const at = after[0] as number;
    if ((to === undefined || at < to) && (from === undefined || at >= from)) {
      out.push(...(await wholeMs(at)).filter((r) => compareKeys(readingKey(r), after) < 0));
    }
    upper = to === undefined ? at : Math.min(to, at);
  }
  while (out.length <= limit && (upper === undefined || from === undefined || upper > from)) {
    const want = Math.min(cap, limit + 1 - out.length);
    const rows = await store.list({ ...base, ...(from !== undefined ? { from } : {}), ...(upper !== undefined ? { to: upper } : {}), limit: want });
    if (rows.length < want) {
      out.push(...rows);
      break;
    }
    // Cut short: the rows of its oldest millisecond may be only some of them.
    let oldest = rows[0].ts;
    for (const r of rows) if (r.ts < oldest) oldest = r.ts;
    out.push(...rows.filter((r) => r.ts > oldest));
    if (out.length >= limit) {
      // A full page of whole milliseconds; the rest only shows that more exist (they sort after it).
      out.push(...rows.filter((r) => r.ts === oldest));
      break;
    }
    out.push(...(await wholeMs(oldest)));
    upper = oldest;
  }
  return out;
}

export function registerReadingRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  /** The regulator's voids of these readings' devices (none without the correction records). */
  const voidsOf = async (rows: Reading[]) => (await ctx.deps.corrections?.records.voidsOf([...new Set(rows.map((r) => r.deviceId))])) ?? [];
  const { registry } = ctx.deps;

  app.get<{ Params: Static<typeof FacilityParams>; Querystring: ReadingsQuery }>(
    '/v1/facilities/:id/readings',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: {
        tags: ['readings'],
        summary: 'Accepted readings, newest first, paged with limit and cursor, in normalised units; `late` when a settlement counted it after its own window',
        params: FacilityParams,
        querystring: ReadingsQuery,
        response: { 200: ReadingList, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const facilityId = request.params.id;
      const store = ctx.need('readings');
      if (!registry.getFacility(facilityId)) throw errors.FACILITY_NOT_FOUND(facilityId);
      const q = request.query;
      const from = parseTimeQuery(q.from, 'from');
      const to = parseTimeQuery(q.to, 'to');
      if (from !== undefined && to !== undefined && from > to) throw errors.VALIDATION('querystring/from must not be after to');
      const limit = q.limit ?? DEFAULT_PAGE;
      const after = decodeCursor(q.cursor, 'nsn');
      const base = {
        facilityId,
        ...(q.deviceId ? { deviceId: q.deviceId } : {}),
        ...(q.metric ? { metric: q.metric } : {}),
      };
      const fetched = await readingsAfter(store, () => registry.listDevices(facilityId).map((d) => d.deviceId), base, from, to, limit, after);
      const page = pageOf(fetched, readingKey, limit, after);
      const rows = page.items;
      const late =
        ctx.deps.settlements?.lateReadings && rows.length > 0
          ? await ctx.deps.settlements.lateReadings(facilityId, rows.map((r) => ({ deviceId: r.deviceId, seq: r.seq })))
          : undefined;
      const voids = await voidsOf(rows);
      const items: ReadingView[] = rows.map((r) => readingView(r, late?.has(readingKeyText(r)) ?? false, isVoided(voids.filter((v) => v.deviceId === r.deviceId), r)));
      return { items, ...(page.next ? { next: page.next } : {}) };
    },
  );

  app.get<{ Params: Static<typeof ReadingParams> }>(
    '/v1/facilities/:id/readings/:deviceId/:seq',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: {
        tags: ['readings'],
        summary: 'One reading, with the settlement that counted it (null while none has)',
        params: ReadingParams,
        response: { 200: ReadingDetail, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const { id: facilityId, deviceId, seq } = request.params;
      const store = ctx.need('readings');
      if (!registry.getFacility(facilityId)) throw errors.FACILITY_NOT_FOUND(facilityId);
      const r = await store.get(deviceId, seq);
      // Another facility's reading is not found here (the path scopes it).
      if (!r || r.facilityId !== facilityId) throw errors.NOT_FOUND(`reading ${deviceId}/${seq} of facility ${facilityId}`);
      const counted = await ctx.deps.settlements?.settlementOfReading?.(facilityId, { deviceId, seq, ts: r.ts, ...(r.arrival !== undefined ? { arrival: r.arrival } : {}) });
      return {
        reading: readingView(r, counted?.late ?? false, isVoided(await voidsOf([r]), r)),
        settlement: counted
          ? { id: String(counted.settlement.id), windowStart: iso(counted.settlement.windowStart), windowEnd: iso(counted.settlement.windowEnd), late: counted.late }
          : null,
      };
    },
  );

  app.get<{ Params: Static<typeof FacilityParams>; Querystring: Static<typeof RejectionsQuery> }>(
    '/v1/facilities/:id/rejections',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: {
        tags: ['readings'],
        summary: 'Refused readings with their reason, newest first, paged with limit and cursor',
        params: FacilityParams,
        querystring: RejectionsQuery,
        response: { 200: RejectionList, ...errorResponses(400, 401, 403, 404, 429) },
      },
    },
    async (request) => {
      const facilityId = request.params.id;
      if (!registry.getFacility(facilityId)) throw errors.FACILITY_NOT_FOUND(facilityId);
      const limit = request.query.limit ?? DEFAULT_PAGE;
      const after = decodeCursor(request.query.cursor, 'n');
      const fetched = await registry.pageRejections(facilityId, limit + 1, after ? (after[0] as number) : undefined);
      const more = fetched.length > limit;
      const rows = fetched.slice(0, limit).map((x) => x.rejection);
      return {
        ...(more ? { next: encodeCursor([fetched[limit - 1].id]) } : {}),
        items: rows.map((r) => ({
          deviceId: r.deviceId,
          receivedAt: iso(r.receivedAt),
          reason: r.reason,
          ...(r.detail ? { detail: r.detail } : {}),
          payload: r.payload,
          ...(r.count && r.count > 1 ? { count: r.count, lastReceivedAt: iso(r.lastReceivedAt ?? r.receivedAt) } : {}),
        })),
      };
    },
  );
}
