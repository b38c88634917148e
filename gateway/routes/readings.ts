/** A facility's readings (normalised units, late flag from the oracle's evidence) and rejections. */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, requireRole } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import type { ReadingView } from '../../domain/reading.ts';
import { FacilityParams, ReadingList, ReadingsQuery, RejectionList, RejectionsQuery, errorResponses } from '../schemas.ts';
import { iso, parseTimeQuery } from '../format.ts';

export function registerReadingRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { registry } = ctx.deps;

  app.get<{ Params: Static<typeof FacilityParams>; Querystring: ReadingsQuery }>(
    '/v1/facilities/:id/readings',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: {
        tags: ['readings'],
        summary: 'Accepted readings, newest first, in normalised units; `late` when a settlement counted it after its own window',
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
      const rows = await store.list({
        facilityId,
        ...(q.deviceId ? { deviceId: q.deviceId } : {}),
        ...(q.metric ? { metric: q.metric } : {}),
        ...(from !== undefined ? { from } : {}),
        ...(to !== undefined ? { to } : {}),
        limit: q.limit ?? 100,
      });
      const late =
        ctx.deps.oracle?.lateReadings && rows.length > 0
          ? await ctx.deps.oracle.lateReadings(facilityId, rows.map((r) => ({ deviceId: r.deviceId, seq: r.seq })))
          : undefined;
      const items: ReadingView[] = rows.map((r) => ({
        deviceId: r.deviceId,
        seq: r.seq,
        ts: iso(r.ts),
        metric: r.metric,
        value: r.value,
        unit: r.unit,
        ...(r.reset ? { reset: true } : {}),
        ...(late?.has(`${r.deviceId}:${r.seq}`) ? { late: true } : {}),
      }));
      return { items };
    },
  );

  app.get<{ Params: Static<typeof FacilityParams>; Querystring: Static<typeof RejectionsQuery> }>(
    '/v1/facilities/:id/rejections',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: {
        tags: ['readings'],
        summary: 'Refused readings with their reason, newest first',
        params: FacilityParams,
        querystring: RejectionsQuery,
        response: { 200: RejectionList, ...errorResponses(400, 401, 403, 404, 429) },
      },
    },
    async (request) => {
      const facilityId = request.params.id;
      if (!registry.getFacility(facilityId)) throw errors.FACILITY_NOT_FOUND(facilityId);
      const rows = registry.listRejections(facilityId, request.query.limit ?? 100);
      return {
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
