/**
 * Credit batches (one per facility per vintage) and what an account holds, read from the chain. A
 * facility key sees its own facility's batches only; holdings are public chain state, so any key
 * may read any account's.
 */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, principalOf, requireRole, scopedFacility } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import { checksumAddress } from '../../contracts/client/crypto.ts';
import { accountAddress } from '../../contracts/client/address.ts';
import { asChainError } from '../errors.ts';
import { AccountParams, BatchList, BatchesQuery, HoldingsView, errorResponses } from '../schemas.ts';
import { batchJson } from '../certificate.ts';

export function registerBatchRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get<{ Querystring: Static<typeof BatchesQuery> }>(
    '/v1/batches',
    {
      preValidation: requireRole(ALL_ROLES),
      schema: {
        tags: ['credits'],
        summary: "A facility's credit batches (one per vintage: the UTC month of its windows), oldest first, with issued/retired/burned totals",
        querystring: BatchesQuery,
        response: { 200: BatchList, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const ledger = ctx.need('ledger');
      const facilityId = scopedFacility(principalOf(request), request.query.facilityId)!;
      if (!ctx.deps.registry.getFacility(facilityId)) throw errors.FACILITY_NOT_FOUND(facilityId);
      const batches = await ctx.chainCache.get(`batches:${facilityId}`, () => ledger.batches(facilityId)).catch((err: unknown) => {
        throw asChainError(err);
      });
      return { items: batches.map(batchJson) };
    },
  );

  app.get<{ Params: Static<typeof AccountParams> }>(
    '/v1/accounts/:address/holdings',
    {
      preValidation: requireRole(ALL_ROLES),
      schema: {
        tags: ['credits'],
        summary: "The batches an account holds, with its balance of each (ERC-1155 balances on chain)",
        params: AccountParams,
        response: { 200: HoldingsView, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const ledger = ctx.need('ledger');
      // A mixed-case address with a wrong EIP-55 checksum is a 400 naming it (a typo, not another account).
      const account = /^0x0{40}$/i.test(request.params.address) ? checksumAddress(request.params.address) : accountAddress(request.params.address, 'params/address');
      const holdings = await ctx.chainCache.get(`holdings:${account}`, () => ledger.holdings(account)).catch((err: unknown) => {
        throw asChainError(err);
      });
      return {
        account,
        totalGrams: holdings.reduce((a, h) => a + h.balanceGrams, 0n).toString(),
        items: holdings.map((h) => ({ ...batchJson(h.batch), balanceGrams: h.balanceGrams.toString() })),
      };
    },
  );
}
