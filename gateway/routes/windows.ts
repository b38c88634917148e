/**
 * `GET /v1/facilities/{id}/windows`: per window, what a regulator reads (emissions by source against
 * the baseline, net, coverage, settled or not, consumption per device), computed by the oracle's
 * methodology over the store (oracle/windows.ts). A settled window shows its settlement's figures.
 */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, requireRole } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import type { Settlement } from '../../store/types.ts';
import type { SettlementRecord } from '../deps.ts';
import { windowFigures, type WindowFigures } from '../../oracle/windows.ts';
import { FacilityParams, WindowList, WindowsQuery, errorResponses } from '../schemas.ts';
import { gramsText, iso, parseTimeQuery } from '../format.ts';

/** The most windows one request covers (each reads every device's readings of the window). */
export const MAX_WINDOWS = 288;
/** Windows answered without `from`. */
export const DEFAULT_WINDOWS = 48;

/** A record with the inputs it was settled with (the oracle's records have them; anything else cannot be shown per source). */
function recorded(r: SettlementRecord): Settlement {
  const inputs = r.inputs as Partial<Settlement['inputs']> | undefined;
  if (!inputs?.totals || !inputs.factors || !inputs.baselineKg || !Array.isArray(inputs.devices) || !inputs.devices.every((d) => Array.isArray(d.endCursors))) {
    throw errors.BACKEND_UNAVAILABLE(`the recorded inputs of settlement ${String(r.id)} (figures per source)`);
  }
  return {
    ...(r as unknown as Settlement),
    id: String(r.id),
    netGrams: gramsText(r.netGrams),
    mintedGrams: gramsText(r.mintedGrams),
    burnedGrams: gramsText(r.burnedGrams),
    deficitGrams: gramsText(r.deficitGrams),
  };
}

function figuresView(f: WindowFigures) {
  return {
    windowStart: iso(f.window.start),
    windowEnd: iso(f.window.end),
    settled: f.settled,
    settlementId: f.settlementId,
    open: f.open,
    complete: f.complete,
    emissionsKg: f.emissionsKg,
    actualKg: f.actualKg,
    baselineKg: f.baselineKg,
    netGrams: f.netGrams,
    totals: f.totals,
    devices: f.devices,
    ...(f.recomputedMatches !== undefined ? { recomputedMatches: f.recomputedMatches } : {}),
  };
}

export function registerWindowRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { registry } = ctx.deps;

  app.get<{ Params: Static<typeof FacilityParams>; Querystring: WindowsQuery }>(
    '/v1/facilities/:id/windows',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: {
        tags: ['settlements'],
        summary: `Per window: emissions by source (grid import, gas, direct, export credit) against the baseline, net, coverage, settled or not, consumption per device; at most ${MAX_WINDOWS} windows`,
        description:
          'Computed with the methodology (exact decimals). A settled window shows its settlement (net, totals, factors, baseline as recorded); a window not settled yet shows what the oracle would settle with the readings stored now (provisional), the window in progress its figures so far.',
        params: FacilityParams,
        querystring: WindowsQuery,
        response: { 200: WindowList, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const facilityId = request.params.id;
      const facility = registry.getFacility(facilityId);
      if (!facility) throw errors.FACILITY_NOT_FOUND(facilityId);
      const readings = ctx.need('readings');
      const settlements = ctx.need('settlements');
      const W = ctx.windowMs;
      const now = ctx.now();
      const to = parseTimeQuery(request.query.to, 'to') ?? now;
      const from = parseTimeQuery(request.query.from, 'from') ?? to - DEFAULT_WINDOWS * W;
      if (from >= to) throw errors.VALIDATION('querystring/from must be before to');
      const count = Math.ceil(to / W) - Math.floor(from / W);
      if (count > MAX_WINDOWS) throw errors.WINDOW_RANGE_TOO_LARGE(count, MAX_WINDOWS, W / 1000);
      const items = await windowFigures(
        {
          readings,
          registry,
          ...(ctx.deps.corrections ? { voids: ctx.deps.corrections.records } : {}),
          // An implementation may return more than asked (GatewaySettlements): filter and order here.
          listSettlements: async (q) => {
            const rows = (await settlements.listSettlements(q))
              .filter((s) => s.facilityId === facilityId && (q.from === undefined || s.windowStart >= q.from) && (q.to === undefined || s.windowStart < q.to))
              .sort((a, b) => (q.newestFirst ? b.windowStart - a.windowStart : a.windowStart - b.windowStart));
            return rows.slice(0, q.limit ?? rows.length).map(recorded);
          },
        },
        facility,
        { from, to, windowMs: W, now },
      );
      return { facilityId, windowSeconds: W / 1000, maxWindows: MAX_WINDOWS, items: items.map(figuresView) };
    },
  );
}
