/** A facility's readings (normalised units, late flag from the oracle's evidence) and rejections. */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, requireRole } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import { FacilityParams, ReadingDetail, ReadingList, ReadingParams, ReadingsQuery, RejectionList, RejectionsQuery, errorResponses } from '../schemas.ts';
import { DEFAULT_PAGE, MAX_PAGE, decodeCursor, encodeCursor, pageOf } from '../paging.ts';
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
        ...(from !== undefined ? { from } : {}),
      };
      let fetched: Reading[];
      if (!after) {
        fetched = await store.list({ ...base, ...(to !== undefined ? { to } : {}), limit: limit + 1 });
      } else {
        // After the cursor: the rest of its millisecond (readings sharing a ts), then older ones.
        const at = after[0] as number;
        const end = to !== undefined ? Math.min(to, at) : at;
        const [ties, older] = await Promise.all([
          to === undefined || at < to ? store.list({ ...base, from: Math.max(from ?? at, at), to: at + 1, limit: MAX_PAGE }) : Promise.resolve([]),
          store.list({ ...base, to: end, limit: limit + 1 }),
        ]);
        fetched = [...ties, ...older];
      }
      const page = pageOf(fetched, (r) => [r.ts, r.deviceId, r.seq], limit, after);
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
