/**
 * Settlements from the oracle's records (`deps.settlements`, local data: no chain needed), their
 * verification against the chain and inclusion proofs (`deps.audit`, oracle/audit.ts, read-only).
 */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, assertFacilityAccess, principalOf, requireRole, scopedFacility } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import type { SettlementRecord } from '../deps.ts';
import { AuditBundle } from '../../audit/bundle.ts';
import { message } from '../../oracle/chain-sync.ts';
import { toBig } from '../../contracts/client/port.ts';
import { ProofQuery, ProofView, SettlementList, SettlementParams, SettlementView, SettlementsQuery, VerifyView, errorResponses } from '../schemas.ts';
import { gramsText, iso, jsonSafe, parseTimeQuery } from '../format.ts';
import { DEFAULT_PAGE, decodeCursor, pageOf } from '../paging.ts';

/** What a settlement added to or paid down of the deficit, from its amounts (the Ledger's _settle rule). */
function deficitMoves(s: SettlementRecord): { added: bigint; paid: bigint } {
  const net = BigInt(gramsText(s.netGrams));
  const minted = BigInt(gramsText(s.mintedGrams));
  const burned = BigInt(gramsText(s.burnedGrams));
  const added = net < 0n ? -net - burned : 0n;
  const paid = net > 0n ? net - minted : 0n;
  return { added: added > 0n ? added : 0n, paid: paid > 0n ? paid : 0n };
}

export function settlementView(s: SettlementRecord) {
  const moves = deficitMoves(s);
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
    deficitAddedGrams: moves.added.toString(),
    deficitPaidGrams: moves.paid.toString(),
    deficitAfterGrams: gramsText(s.deficitGrams),
    evidenceRoot: s.evidenceRoot,
    txHash: s.txHash ?? null,
    // Settlements before mrv-signed-3 did not record signatures: no summary rather than "0 signed".
    ...(s.inputs && !s.inputs.methodologyVersion?.startsWith('mrv-cursor-') ? { signatures: signatureSummary(s.inputs.devices) } : {}),
    bundleUrl: `/v1/settlements/${encodeURIComponent(String(s.id))}/bundle`,
  };
}

/** Signed devices among those whose readings a settlement counted, and whose hash chain broke. */
export function signatureSummary(devices: NonNullable<SettlementRecord['inputs']>['devices']) {
  const counted = devices.filter((d) => (d.consumedCount ?? 0) > 0 || d.chain);
  const signed = counted.filter((d) => d.chain);
  const broken = signed.filter((d) => !d.chain?.unbroken).map((d) => d.deviceId);
  return { devices: counted.length, signed: signed.length, chainsUnbroken: broken.length === 0, broken };
}

export function registerSettlementRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  /** The settlements' views, each with its corrections when it has any. */
  const withCorrections = async (rows: SettlementRecord[]) => {
    const byId = new Map<string, { id: string; seq: number; state: string; netGrams: string; deltaGrams: string }[]>();
    for (const c of (await ctx.deps.corrections?.records.correctionsOf(rows.map((s) => String(s.id)))) ?? []) {
      const list = byId.get(c.settlementId) ?? [];
      list.push({ id: c.id, seq: c.seq, state: c.state, netGrams: c.netGrams, deltaGrams: c.deltaGrams });
      byId.set(c.settlementId, list);
    }
    return rows.map((s) => {
      const corrections = byId.get(String(s.id));
      return { ...settlementView(s), ...(corrections ? { corrections } : {}) };
    });
  };
  const read = requireRole(ALL_ROLES);

  /** The settlement, 404 if unknown, 403 if a facility key asks for another facility's. */
  async function load(request: { params: { id: string } } & Parameters<typeof principalOf>[0]): Promise<SettlementRecord> {
    const s = await ctx.need('settlements').getSettlement(request.params.id);
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
        summary: 'Settlements, newest window first, paged with limit and cursor (a facility key sees its own only)',
        querystring: SettlementsQuery,
        response: { 200: SettlementList, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const after = decodeCursor(request.query.cursor, 'ns');
      const settlements = ctx.need('settlements');
      const facilityId = scopedFacility(principalOf(request), request.query.facilityId);
      const from = parseTimeQuery(request.query.from, 'from');
      const to = parseTimeQuery(request.query.to, 'to');
      const limit = request.query.limit ?? DEFAULT_PAGE;
      const rows = await settlements.listSettlements({
        ...(facilityId ? { facilityId } : {}),
        ...(from !== undefined ? { from } : {}),
        ...(to !== undefined ? { to } : {}),
        limit: limit + 1,
        newestFirst: true,
        ...(after ? { before: { windowStart: after[0] as number, facilityId: after[1] as string } } : {}),
      });
      const page = pageOf(rows, (s) => [s.windowStart, s.facilityId], limit, after);
      return { items: await withCorrections(page.items), ...(page.next ? { next: page.next } : {}) };
    },
  );

  app.get<{ Params: Static<typeof SettlementParams> }>(
    '/v1/settlements/:id',
    {
      preValidation: read,
      schema: { tags: ['settlements'], summary: 'One settlement', params: SettlementParams, response: { 200: SettlementView, ...errorResponses(400, 401, 403, 404, 429, 503) } },
    },
    async (request) => (await withCorrections([await load(request)]))[0],
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
      const r = await ctx.need('audit').verify(String(s.id));
      return { match: r.match, onChain: jsonSafe(r.onChain), recomputed: jsonSafe(r.recomputed), recorded: jsonSafe(r.recorded) };
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
      const r = await ctx.need('audit').proof(String(s.id), deviceId, seq);
      if (!r) throw errors.PROOF_NOT_FOUND(deviceId, seq);
      return jsonSafe(r);
    },
  );

  app.get<{ Params: Static<typeof SettlementParams> }>(
    '/v1/settlements/:id/bundle',
    {
      preValidation: read,
      schema: {
        tags: ['settlements'],
        summary: 'The audit bundle: everything to recompute the settlement and its root offline and check every signature (npm run audit)',
        params: SettlementParams,
        response: { 200: AuditBundle, ...errorResponses(400, 401, 403, 404, 409, 429, 503) },
      },
    },
    async (request, reply) => {
      const s = await load(request);
      const { registry, ledger } = ctx.deps;
      const facility = registry.getFacility(s.facilityId);
      const keys: Record<string, { publicKey: string }[]> = {};
      for (const d of registry.listDevices(s.facilityId)) if (d.publicKey) keys[d.deviceId] = [{ publicKey: d.publicKey }];
      let chain: AuditBundle['chain'];
      if (ledger) {
        try {
          const on = await ledger.settlementAt(s.facilityId, s.windowStart);
          chain = {
            settlement: on
              ? {
                  found: true,
                  evidenceRoot: on.evidenceRoot.toLowerCase(),
                  netGrams: toBig(on.netGrams).toString(),
                  ...(on.txHash ? { txHash: on.txHash } : {}),
                  ...(on.mintedGrams !== undefined ? { mintedGrams: toBig(on.mintedGrams).toString() } : {}),
                  ...(on.burnedGrams !== undefined ? { burnedGrams: toBig(on.burnedGrams).toString() } : {}),
                  ...(on.deficitGrams !== undefined ? { deficitGrams: toBig(on.deficitGrams).toString() } : {}),
                }
              : { found: false },
          };
        } catch (err) {
          // The bundle is the platform's data; the auditor reads the chain itself.
          ctx.log.warn({ err: message(err), settlement: String(s.id) }, 'bundle: chain record not read');
        }
      }
      const bundle = await ctx.need('audit').bundle(String(s.id), {
        ...(facility ? { facility: { name: facility.name, owner: facility.owner } } : {}),
        keys,
        ...(chain ? { chain } : {}),
      });
      reply.header('content-disposition', `attachment; filename="bundle-${String(s.id).replace(/[^A-Za-z0-9_.-]/g, '_')}.json"`);
      return bundle;
    },
  );
}
