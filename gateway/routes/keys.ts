/** API keys (admin only): create (secret shown once), list, revoke. */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { requireRole } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import { ApiKeyCreate, ApiKeyCreated, ApiKeyList, KeyParams, PageQuery, errorResponses } from '../schemas.ts';
import { DEFAULT_PAGE, decodeCursor, pageOf } from '../paging.ts';
import { iso } from '../format.ts';

const ADMIN = requireRole(['admin']);

export function registerKeyRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.post<{ Body: Static<typeof ApiKeyCreate> }>(
    '/v1/api-keys',
    {
      preValidation: ADMIN,
      schema: {
        tags: ['api keys'],
        summary: 'Create an API key (admin). The key is in this response only.',
        body: ApiKeyCreate,
        response: { 201: ApiKeyCreated, ...errorResponses(400, 401, 403, 404, 429) },
      },
    },
    async (request, reply) => {
      const { role, facilityId } = request.body;
      if (role === 'facility') {
        if (!facilityId) throw errors.VALIDATION('body/facilityId is required for role facility');
        if (!ctx.deps.registry.getFacility(facilityId)) throw errors.FACILITY_NOT_FOUND(facilityId);
      }
      const { info, key } = await ctx.keys.create(role, facilityId);
      request.log.info({ keyId: info.id, role, facilityId, by: request.principal?.keyId }, 'API key created');
      return reply.code(201).send({ id: info.id, role: info.role, ...(info.facilityId ? { facilityId: info.facilityId } : {}), key });
    },
  );

  app.get<{ Querystring: PageQuery }>(
    '/v1/api-keys',
    {
      preValidation: ADMIN,
      schema: {
        tags: ['api keys'],
        summary: 'List active API keys (admin), newest first, paged with limit and cursor; secrets are never shown',
        querystring: PageQuery,
        response: { 200: ApiKeyList, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (request) => {
      const page = pageOf(ctx.keys.list(), (k) => [k.createdAt, k.id], request.query.limit ?? DEFAULT_PAGE, decodeCursor(request.query.cursor, 'ns'));
      return {
        items: page.items.map((k) => ({
          id: k.id,
          role: k.role,
          ...(k.facilityId ? { facilityId: k.facilityId } : {}),
          prefix: k.prefix,
          createdAt: iso(k.createdAt),
          ...(k.lastUsedAt ? { lastUsedAt: iso(k.lastUsedAt) } : {}),
        })),
        ...(page.next ? { next: page.next } : {}),
      };
    },
  );

  app.delete<{ Params: Static<typeof KeyParams> }>(
    '/v1/api-keys/:id',
    {
      preValidation: ADMIN,
      schema: { tags: ['api keys'], summary: 'Revoke an API key (admin); effective at once', params: KeyParams, response: { 204: { type: 'null', description: 'revoked' }, ...errorResponses(400, 401, 403, 404, 429) } },
    },
    async (request, reply) => {
      if (!(await ctx.keys.revoke(request.params.id))) throw errors.NOT_FOUND(`API key ${request.params.id}`);
      request.log.info({ keyId: request.params.id, by: request.principal?.keyId }, 'API key revoked');
      return reply.code(204).send();
    },
  );
}
