/** Facilities (register, list, read, suspend, re-baseline) and their on-chain credit balance. */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, STAFF, principalOf, requireRole } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import { Decimal, gramsToTonnes } from '../../domain/decimal.ts';
import { nextWindowStart, windowOf } from '../../domain/window.ts';
import type { Facility } from '../../store/types.ts';
import { BalanceView, FacilityCreate, FacilityList, FacilityParams, FacilityPatch, FacilityView, errorResponses } from '../schemas.ts';
import { gramsText, iso } from '../format.ts';
import { asChainError } from '../errors.ts';
import { DEFAULT_FACTORS } from '../../oracle/factors.ts';


type ChainOutcome = { synced: boolean; message?: string };

export function facilityView(f: Facility, chain?: ChainOutcome) {
  return {
    id: f.id,
    name: f.name,
    owner: f.owner,
    baselineKgPerHour: f.baselineKgPerHour,
    gridFactorKgPerKwh: f.gridFactorKgPerKwh,
    gasFactorKgPerM3: f.gasFactorKgPerM3,
    status: f.status,
    createdAt: iso(f.createdAt),
    ...(chain ? { chain } : {}),
  };
}

function decimalText(v: string | number, field: string): string {
  try {
    const d = Decimal.from(v);
    if (d.isNegative()) throw errors.VALIDATION(`body/${field} must not be negative`);
    return d.toString();
  } catch (err) {
    if ((err as { code?: string }).code === 'INVALID_DECIMAL') throw errors.VALIDATION(`body/${field}: ${(err as Error).message}`);
    throw err;
  }
}

export function registerFacilityRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { registry } = ctx.deps;

  /** Best effort: the registry is the source of truth for the oracle, which reconciles the chain. */
  async function onChain(what: string, facilityId: string, fn: () => Promise<unknown>): Promise<ChainOutcome> {
    const ledger = ctx.deps.ledger;
    if (!ledger) return { synced: false, message: 'no chain configured in this process' };
    try {
      await fn();
      ctx.chainCache.invalidate(`facility:${facilityId}`);
      return { synced: true };
    } catch (err) {
      ctx.log.warn({ err, facilityId, what }, 'chain write failed; the oracle reconciles');
      return { synced: false, message: `${what} not confirmed on-chain yet: ${(err as Error).message.slice(0, 160)}` };
    }
  }

  app.post<{ Body: FacilityCreate }>(
    '/v1/facilities',
    {
      preValidation: requireRole(STAFF),
      schema: {
        tags: ['facilities'],
        summary: 'Register a facility (admin, regulator); also registered on-chain',
        body: FacilityCreate,
        response: { 201: FacilityView, ...errorResponses(400, 401, 403, 409, 429) },
      },
    },
    async (request, reply) => {
      const b = request.body;
      const baseline = decimalText(b.baselineKgPerHour, 'baselineKgPerHour');
      const grid = b.gridFactorKgPerKwh === undefined ? DEFAULT_FACTORS.gridKgPerKwh : decimalText(b.gridFactorKgPerKwh, 'gridFactorKgPerKwh');
      const gas = b.gasFactorKgPerM3 === undefined ? DEFAULT_FACTORS.gasKgPerM3 : decimalText(b.gasFactorKgPerM3, 'gasFactorKgPerM3');
      if (registry.getFacility(b.id)) throw errors.CONFLICT(`facility ${b.id} already exists`);
      const f = registry.createFacility({ id: b.id, name: b.name, owner: b.owner, baselineKgPerHour: baseline, gridFactorKgPerKwh: grid, gasFactorKgPerM3: gas, createdAt: ctx.now() });
      // The window containing the registration: every window since registration is settled (SPEC).
      const firstWindow = windowOf(f.createdAt, ctx.windowMs).start;
      const chain = await onChain('registration', f.id, () => ctx.deps.ledger!.registerFacility(f.id, f.owner, baseline, firstWindow));
      request.log.info({ facilityId: f.id, by: request.principal?.keyId, chain: chain.synced }, 'facility registered');
      return reply.code(201).send(facilityView(f, chain));
    },
  );

  app.get(
    '/v1/facilities',
    {
      preValidation: requireRole(ALL_ROLES),
      schema: { tags: ['facilities'], summary: 'List facilities (a facility key sees its own only)', response: { 200: FacilityList, ...errorResponses(401, 429) } },
    },
    async (request) => {
      const p = principalOf(request);
      const all = p.role === 'facility' ? [registry.getFacility(p.facilityId!)].filter((f): f is Facility => !!f) : registry.listFacilities();
      return { items: all.map((f) => facilityView(f)) };
    },
  );

  app.get<{ Params: Static<typeof FacilityParams> }>(
    '/v1/facilities/:id',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: { tags: ['facilities'], summary: 'One facility', params: FacilityParams, response: { 200: FacilityView, ...errorResponses(400, 401, 403, 404, 429) } },
    },
    async (request) => {
      const f = registry.getFacility(request.params.id);
      if (!f) throw errors.FACILITY_NOT_FOUND(request.params.id);
      return facilityView(f);
    },
  );

  app.patch<{ Params: Static<typeof FacilityParams>; Body: FacilityPatch }>(
    '/v1/facilities/:id',
    {
      preValidation: requireRole(STAFF),
      schema: {
        tags: ['facilities'],
        summary: 'Suspend/reactivate a facility or change its baseline from the next window (admin, regulator)',
        description: 'Suspension disconnects every device of the facility at once and is pushed to the chain (best effort; the oracle reconciles).',
        params: FacilityParams,
        body: FacilityPatch,
        response: { 200: FacilityView, ...errorResponses(400, 401, 403, 404, 429) },
      },
    },
    async (request) => {
      const id = request.params.id;
      const before = registry.getFacility(id);
      if (!before) throw errors.FACILITY_NOT_FOUND(id);
      const patch: { status?: 'active' | 'suspended'; baselineKgPerHour?: string; effectiveFrom?: number } = {};
      if (request.body.status) patch.status = request.body.status;
      if (request.body.baselineKgPerHour !== undefined) {
        patch.baselineKgPerHour = decimalText(request.body.baselineKgPerHour, 'baselineKgPerHour');
        patch.effectiveFrom = nextWindowStart(ctx.now(), ctx.windowMs);
      }
      const f = registry.updateFacility(id, patch);
      let chain: ChainOutcome | undefined;
      if (patch.status === 'suspended') await ctx.deps.broker?.disconnectFacility(id);
      if (patch.status && patch.status !== before.status) {
        chain = await onChain('suspension', id, () => ctx.deps.ledger!.setFacilitySuspended(id, patch.status === 'suspended'));
      }
      const ledger = ctx.deps.ledger;
      if (patch.baselineKgPerHour !== undefined && ledger?.setBaseline) {
        const c = await onChain('baseline', id, () => ledger.setBaseline!(id, patch.baselineKgPerHour!, patch.effectiveFrom!));
        chain = chain && !chain.synced ? chain : c;
      }
      request.log.info({ facilityId: id, patch, by: request.principal?.keyId }, 'facility updated');
      return facilityView(f, chain);
    },
  );

  app.get<{ Params: Static<typeof FacilityParams> }>(
    '/v1/facilities/:id/balance',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: {
        tags: ['credits'],
        summary: 'Credit balance of the facility owner and the facility totals, read from the chain',
        params: FacilityParams,
        response: { 200: BalanceView, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const id = request.params.id;
      const ledger = ctx.need('ledger');
      // Chain state changes once per block: a short cache keeps this cheap under load (an unknown
      // facility throws, and failures are not cached).
      return ctx.chainCache.get(`facility:${id}:balance`, async () => {
        const f = registry.getFacility(id);
        if (!f) throw errors.FACILITY_NOT_FOUND(id);
        let c: Awaited<ReturnType<typeof ledger.facility>>;
        let balance: bigint;
        let owner: string;
        try {
          c = await ledger.facility(id);
          owner = c.registered && c.owner ? c.owner : f.owner;
          balance = BigInt(gramsText(await ledger.balanceOf(owner)));
        } catch (err) {
          throw asChainError(err);
        }
        return {
          facilityId: id,
          owner,
          balanceGrams: balance.toString(),
          mintedGrams: gramsText(c.mintedGrams),
          burnedGrams: gramsText(c.burnedGrams),
          retiredGrams: gramsText(c.retiredGrams),
          deficitGrams: gramsText(c.deficitGrams),
          balanceTonnes: gramsToTonnes(balance),
          suspended: Boolean(c.suspended),
        };
      });
    },
  );
}
