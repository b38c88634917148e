/** Settlements from the oracle's records, their verification against the chain, and inclusion proofs. */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, assertFacilityAccess, principalOf, requireRole, scopedFacility } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import type { SettlementRecord } from '../deps.ts';
import { gatewayErrors } from '../errors.ts';
import { ProofQuery, ProofView, SettlementList, SettlementParams, SettlementView, SettlementsQuery, VerifyView, errorResponses } from '../schemas.ts';
import { gramsText, iso, jsonSafe, parseTimeQuery } from '../format.ts';

export function settlementView(s: SettlementRecord) {
  return {
    id: String(s.id),
    facilityId: s.facilityId,
    windowStart: iso(s.windowStart),
    windowEnd: iso(s.windowEnd),
    complete: Boolean(s.complete),
    netGrams: gramsText(s.netGrams),
    mintedGrams: gramsText(s.mintedGrams),
    burnedGrams: gramsText(s.burnedGrams),
    deficitGrams: gramsText(s.deficitGrams),
    evidenceRoot: s.evidenceRoot,
    txHash: s.txHash ?? null,
  };
}

export function registerSettlementRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const read = requireRole(ALL_ROLES);

  /** The settlement, 404 if unknown, 403 if a facility key asks for another facility's. */
  async function load(request: { params: { id: string } } & Parameters<typeof principalOf>[0]): Promise<SettlementRecord> {
    const oracle = ctx.need('oracle');
    const s = await oracle.getSettlement(request.params.id);
    if (!s) throw errors.SETTLEMENT_NOT_FOUND(request.params.id);
    assertFacilityAccess(principalOf(request), s.facilityId);
    return s;
  }

  app.get<{ Querystring: SettlementsQuery }>(
    '/v1/settlements',
    {
      preValidation: read,
      schema: {
        tags: ['settlements'],
        summary: 'Settlements, oldest window first (a facility key sees its own only)',
        querystring: SettlementsQuery,
        response: { 200: SettlementList, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const oracle = ctx.need('oracle');
      const facilityId = scopedFacility(principalOf(request), request.query.facilityId);
      const from = parseTimeQuery(request.query.from, 'from');
      const to = parseTimeQuery(request.query.to, 'to');
      const rows = await oracle.listSettlements({
        ...(facilityId ? { facilityId } : {}),
        ...(from !== undefined ? { from } : {}),
        ...(to !== undefined ? { to } : {}),
      });
      return { items: rows.map(settlementView) };
    },
  );

  app.get<{ Params: Static<typeof SettlementParams> }>(
    '/v1/settlements/:id',
    {
      preValidation: read,
      schema: { tags: ['settlements'], summary: 'One settlement', params: SettlementParams, response: { 200: SettlementView, ...errorResponses(400, 401, 403, 404, 429, 503) } },
    },
    async (request) => settlementView(await load(request)),
  );

  app.get<{ Params: Static<typeof SettlementParams> }>(
    '/v1/settlements/:id/verify',
    {
      preValidation: read,
      schema: {
        tags: ['settlements'],
        summary: 'Recompute the evidence root and amounts from the stored readings and compare them with the chain',
        params: SettlementParams,
        response: { 200: VerifyView, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const s = await load(request);
      const r = await ctx.need('oracle').verify(String(s.id));
      return { match: Boolean(r.match), onChain: jsonSafe(r.onChain ?? null), recomputed: jsonSafe(r.recomputed), ...(r.recorded ? { recorded: jsonSafe(r.recorded) } : {}) };
    },
  );

  app.get<{ Params: Static<typeof SettlementParams>; Querystring: Static<typeof ProofQuery> }>(
    '/v1/settlements/:id/proof',
    {
      preValidation: read,
      schema: {
        tags: ['settlements'],
        summary: "Merkle proof that one reading is in the settlement's evidence (verify with StandardMerkleTree.verify)",
        params: SettlementParams,
        querystring: ProofQuery,
        response: { 200: ProofView, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const s = await load(request);
      const { deviceId, seq } = request.query;
      const r = await ctx.need('oracle').proof(String(s.id), deviceId, seq);
      if (!r) throw gatewayErrors.PROOF_NOT_FOUND(deviceId, seq);
      return jsonSafe(r);
    },
  );
}
