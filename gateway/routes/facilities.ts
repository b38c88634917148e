/**
 * Facilities (register, list, read, suspend, re-baseline, correct the owner or remove one that never
 * settled) and their on-chain credit balance. What the ledger would refuse is refused here first,
 * with a 400 naming the problem: an owner with a bad EIP-55 checksum or the zero address, a baseline
 * with more than 6 decimals. An owner (an organisation) may own several facilities.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, STAFF, principalOf, requireRole } from '../auth.ts';
import { errors, isError } from '../../domain/errors.ts';
import { Decimal, gramsToTonnes } from '../../domain/decimal.ts';
import type { Facility } from '../../store/types.ts';
import { BalanceView, FacilityCreate, FacilityList, FacilityParams, FacilityPatch, FacilityView, PageQuery, errorResponses } from '../schemas.ts';
import { DEFAULT_PAGE, decodeCursor, pageOf } from '../paging.ts';
import { gramsText, iso } from '../format.ts';
import { asChainError } from '../errors.ts';
import { DEFAULT_FACTORS } from '../../oracle/factors.ts';
import { accountAddress } from '../../contracts/client/address.ts';
import type { GatewaySettlements } from '../deps.ts';
import { baselineEffectiveFrom, registryWriter, type RegistryWriter } from '../../oracle/chain-sync.ts';

type ChainOutcome = { synced: boolean; message?: string };

type SettlementStatus = Awaited<ReturnType<NonNullable<GatewaySettlements['facilityStatus']>>>;

/** The oracle's view of a facility: `settlementStatus`, and why and until when while blocked. */
function settlementView(s: SettlementStatus | undefined) {
  if (!s) return {};
  if (s.settlementStatus !== 'blocked') return { settlementStatus: 'ok' as const };
  return {
    settlementStatus: 'blocked' as const,
    settlementBlocked: { reason: s.reason ?? '', since: iso(s.since ?? 0), attempts: s.attempts ?? 0, nextAttemptAt: iso(s.retryAt ?? 0) },
  };
}

export function facilityView(f: Facility, chain?: ChainOutcome, settlement?: SettlementStatus) {
  return {
    id: f.id,
    name: f.name,
    owner: f.owner,
    baselineKgPerHour: f.baselineKgPerHour,
    gridFactorKgPerKwh: f.gridFactorKgPerKwh,
    gasFactorKgPerM3: f.gasFactorKgPerM3,
    status: f.status,
    createdAt: iso(f.createdAt),
    ...settlementView(settlement),
    ...(chain ? { chain } : {}),
  };
}

/** A baseline the ledger can hold: non-negative, at most 6 decimals (it stores mg/h). */
function baselineText(v: string | number, field: string): string {
  const text = decimalText(v, field);
  const mg = Decimal.parse(text).shift(6);
  if (mg.scale !== 0) throw errors.VALIDATION(`body/${field} has more than 6 decimals: the ledger stores the baseline in mg/h`);
  if (mg.mantissa >= 1n << 192n) throw errors.VALIDATION(`body/${field} is too large for the ledger (at most 2^192 - 1 mg/h)`);
  return text;
}

/** The name of the ledger custom error `err` carries, if it is a revert. */
function revertName(err: unknown): string | undefined {
  const e = err as { code?: string; revert?: { name?: string } } | null;
  return isError(e, errors.LEDGER_REVERTED) ? e?.revert?.name : undefined;
}

function decimalText(v: string | number, field: string): string {
  try {
    const d = Decimal.from(v);
    if (d.isNegative()) throw errors.VALIDATION(`body/${field} must not be negative`);
    return d.toString();
  } catch (err) {
    if (isError(err, errors.INVALID_DECIMAL)) throw errors.VALIDATION(`body/${field}: ${(err as Error).message}`);
    throw err;
  }
}

export function registerFacilityRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { registry } = ctx.deps;
  const statusOf = async (id: string) => ctx.deps.settlements?.facilityStatus?.(id);
  /** An owner the registry (and so the ledger) accepts: an address (it may own other facilities too). */
  const ownerFor = (value: unknown, _facilityId: string): string => accountAddress(value, 'body/owner');
  /** Whether the oracle has confirmed a settlement of the facility (then its owner is fixed and it cannot be removed). */
  const hasSettled = async (id: string): Promise<boolean> => {
    const settlements = ctx.deps.settlements;
    if (!settlements) return false;
    return (await settlements.listSettlements({ facilityId: id, limit: 1 })).length > 0;
  };

  /** On-chain registry writes go through oracle/chain-sync.ts, the rules the oracle's reconcile uses. */
  const ledger = ctx.deps.ledger;
  const writer = ledger ? registryWriter(ledger, registry, ctx.windowMs) : undefined;

  /**
   * Best effort: the registry is the source of truth for the oracle, which reconciles the chain.
   * Undefined when this chain client cannot make that write (the oracle does it).
   */
  async function onChain(what: string, facilityId: string, fn: (w: RegistryWriter) => Promise<unknown>): Promise<ChainOutcome | undefined> {
    if (!writer) return { synced: false, message: 'no chain configured in this process' };
    try {
      if ((await fn(writer)) === false) return undefined;
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
      const baseline = baselineText(b.baselineKgPerHour, 'baselineKgPerHour');
      const grid = b.gridFactorKgPerKwh === undefined ? DEFAULT_FACTORS.gridKgPerKwh : decimalText(b.gridFactorKgPerKwh, 'gridFactorKgPerKwh');
      const gas = b.gasFactorKgPerM3 === undefined ? DEFAULT_FACTORS.gasKgPerM3 : decimalText(b.gasFactorKgPerM3, 'gasFactorKgPerM3');
      if (registry.getFacility(b.id)) throw errors.FACILITY_EXISTS(b.id);
      const owner = ownerFor(b.owner, b.id);
      const f = await registry.createFacility({ id: b.id, name: b.name, owner, baselineKgPerHour: baseline, gridFactorKgPerKwh: grid, gasFactorKgPerM3: gas, createdAt: ctx.now() });
      // From the window containing the registration: every window since registration is settled (SPEC).
      const chain = await onChain('registration', f.id, (w) => w.register(f));
      request.log.info({ facilityId: f.id, by: request.principal?.keyId, chain: chain?.synced }, 'facility registered');
      return reply.code(201).send(facilityView(f, chain, await statusOf(f.id)));
    },
  );

  app.get<{ Querystring: PageQuery }>(
    '/v1/facilities',
    {
      preValidation: requireRole(ALL_ROLES),
      schema: {
        tags: ['facilities'],
        summary: 'List facilities, newest registration first, paged with limit and cursor (a facility key sees its own only)',
        querystring: PageQuery,
        response: { 200: FacilityList, ...errorResponses(400, 401, 429) },
      },
    },
    async (request) => {
      const p = principalOf(request);
      const all = p.role === 'facility' ? [registry.getFacility(p.facilityId!)].filter((f): f is Facility => !!f) : registry.listFacilities();
      const page = pageOf(all, (f) => [f.createdAt, f.id], request.query.limit ?? DEFAULT_PAGE, decodeCursor(request.query.cursor, 'ns'));
      return { items: await Promise.all(page.items.map(async (f) => facilityView(f, undefined, await statusOf(f.id)))), ...(page.next ? { next: page.next } : {}) };
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
      return facilityView(f, undefined, await statusOf(f.id));
    },
  );

  app.patch<{ Params: Static<typeof FacilityParams>; Body: FacilityPatch }>(
    '/v1/facilities/:id',
    {
      preValidation: requireRole(STAFF),
      schema: {
        tags: ['facilities'],
        summary: 'Suspend/reactivate a facility, change its baseline from the next window, or correct its owner before it ever settled (admin, regulator)',
        description:
          'Suspension disconnects every device of the facility at once. Every change is pushed to the chain (best effort; the oracle reconciles every run). The owner can be corrected only while the facility has never settled (409 after).',
        params: FacilityParams,
        body: FacilityPatch,
        response: { 200: FacilityView, ...errorResponses(400, 401, 403, 404, 409, 429) },
      },
    },
    async (request) => {
      const id = request.params.id;
      const before = registry.getFacility(id);
      if (!before) throw errors.FACILITY_NOT_FOUND(id);
      const patch: { status?: 'active' | 'suspended'; baselineKgPerHour?: string; effectiveFrom?: number; owner?: string } = {};
      if (request.body.status) patch.status = request.body.status;
      if (request.body.baselineKgPerHour !== undefined) {
        patch.baselineKgPerHour = baselineText(request.body.baselineKgPerHour, 'baselineKgPerHour');
        patch.effectiveFrom = baselineEffectiveFrom(ctx.now(), ctx.windowMs);
      }
      let chain: ChainOutcome | undefined;
      if (request.body.owner !== undefined) {
        const owner = ownerFor(request.body.owner, id);
        if (owner.toLowerCase() !== before.owner.toLowerCase()) {
          if (await hasSettled(id)) throw errors.FACILITY_SETTLED(`facility ${id} has settled windows: its owner can no longer change`);
          if (writer) {
            try {
              if (await writer.pushOwner(id, owner)) {
                ctx.chainCache.invalidate(`facility:${id}`);
                chain = { synced: true };
              }
            } catch (err) {
              const name = revertName(err);
              if (name === 'FacilityHasSettlements') throw errors.FACILITY_SETTLED(`facility ${id} has settled windows on chain: its owner can no longer change`);
              // Not registered on chain yet, unreachable, no signer: the oracle reconciles.
              chain = { synced: false, message: `owner not confirmed on-chain yet: ${(err as Error).message.slice(0, 160)}` };
            }
          }
          patch.owner = owner;
        }
      }
      const f = await registry.updateFacility(id, patch);
      if (patch.status === 'suspended') await ctx.deps.broker?.disconnectFacility(id);
      if (patch.status && patch.status !== before.status) {
        chain = (await onChain('suspension', id, (w) => w.pushSuspension(f))) ?? chain;
      }
      if (patch.baselineKgPerHour !== undefined && writer) {
        const c = await onChain('baseline', id, (w) => w.pushBaseline(f, patch.effectiveFrom!));
        if (c) chain = chain && !chain.synced ? chain : c;
      }
      request.log.info({ facilityId: id, patch, by: request.principal?.keyId }, 'facility updated');
      return facilityView(f, chain, await statusOf(id));
    },
  );

  app.delete<{ Params: Static<typeof FacilityParams> }>(
    '/v1/facilities/:id',
    {
      preValidation: requireRole(STAFF),
      schema: {
        tags: ['facilities'],
        summary: 'Remove a facility registered by mistake, from the registry and the chain (admin, regulator); only while it has never settled',
        description: 'Its devices are removed and disconnected. 409 once a window is settled (suspend it instead); 503 when the chain cannot be reached.',
        params: FacilityParams,
        response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404, 409, 429, 503) },
      },
    },
    async (request, reply) => {
      const id = request.params.id;
      const f = registry.getFacility(id);
      if (!f) throw errors.FACILITY_NOT_FOUND(id);
      if (await hasSettled(id)) throw errors.FACILITY_SETTLED(`facility ${id} has settled windows: it can be suspended, not removed`);
      // The chain first: a facility left registered there would keep its owner and id taken.
      const remover = registryWriter(ctx.need('ledger'), registry, ctx.windowMs);
      try {
        await remover.remove(id);
        ctx.chainCache.invalidate(`facility:${id}`);
      } catch (err) {
        if (revertName(err) === 'FacilityHasSettlements') throw errors.FACILITY_SETTLED(`facility ${id} has settled windows on chain: it can be suspended, not removed`);
        throw asChainError(err);
      }
      const devices = registry.listDevices(id).map((d) => d.deviceId);
      await ctx.deps.broker?.disconnectFacility(id);
      await ctx.deps.settlements?.forgetFacility?.(id, devices);
      await registry.deleteFacility(id);
      request.log.info({ facilityId: id, devices: devices.length, by: request.principal?.keyId }, 'facility removed');
      return reply.code(204).send();
    },
  );

  app.get<{ Params: Static<typeof FacilityParams> }>(
    '/v1/facilities/:id/balance',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: {
        tags: ['credits'],
        summary: "The facility owner's balance of the facility's batches, and the facility totals over its batches, read from the chain",
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
        try {
          c = await ledger.facility(id);
        } catch (err) {
          throw asChainError(err);
        }
        const owner = c.registered && c.owner ? c.owner : f.owner;
        // What the owner holds of this facility's batches (credits of its other facilities, or of
        // other facilities' batches it bought, are not this facility's balance).
        const balance = BigInt(gramsText(c.ownerHeldGrams ?? 0n));
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
