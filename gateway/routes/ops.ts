/** GET /health (no auth), GET /metrics (admin, regulator), GET /openapi.json. */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { requireRole, STAFF } from '../auth.ts';
import { HealthView, errorResponses } from '../schemas.ts';
import type { LedgerPort } from '../../contracts/client/port.ts';

const HEALTH_TIMEOUT_MS = 2000;

async function probe<T>(fn: () => Promise<T> | T): Promise<{ ok: true; value: T } | { ok: false; detail: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const value = await Promise.race([
      Promise.resolve().then(fn),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${HEALTH_TIMEOUT_MS} ms`)), HEALTH_TIMEOUT_MS);
      }),
    ]);
    return { ok: true, value };
  } catch (err) {
    return { ok: false, detail: (err as Error).message.slice(0, 200) };
  } finally {
    clearTimeout(timer);
  }
}

function chainBlock(ledger: LedgerPort): Promise<number> {
  return ledger.blockNumber();
}

type Backend = { ok: boolean; configured: boolean; detail?: string; blockNumber?: number };

export function registerOpsRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { deps } = ctx;

  app.get(
    '/health',
    {
      schema: {
        tags: ['ops'],
        summary: 'Which backends are reachable (no auth). 200 when all configured backends answer, else 503.',
        security: [],
        response: { 200: HealthView, 503: HealthView },
      },
    },
    async (_request, reply) => {
      const [sqlite, store, chain, broker] = await Promise.all([
        probe(() => deps.db.prepare('SELECT 1 AS one').get()),
        deps.readings ? probe(() => deps.readings!.ping()) : undefined,
        deps.ledger ? probe(() => chainBlock(deps.ledger!)) : undefined,
        deps.broker ? probe(() => (deps.broker!.ping ? deps.broker!.ping() : true)) : undefined,
      ]);
      const view = (r: Awaited<ReturnType<typeof probe>> | undefined): Backend => {
        if (!r) return { ok: false, configured: false, detail: 'not configured in this process' };
        if (!r.ok) return { ok: false, configured: true, detail: r.detail };
        return r.value === false ? { ok: false, configured: true, detail: 'ping failed' } : { ok: true, configured: true };
      };
      const backends: Record<string, Backend> = {
        registry: view(sqlite),
        store: view(store),
        chain: view(chain),
        broker: view(broker),
        oracle: deps.settlements ? { ok: true, configured: true } : { ok: false, configured: false, detail: 'not configured in this process' },
      };
      if (chain?.ok) backends.chain.blockNumber = Number(chain.value);
      const healthy = Object.values(backends).every((b) => b.ok || !b.configured);
      const settlement = { windowSeconds: ctx.windowMs / 1000, ...(ctx.graceMs !== undefined ? { graceSeconds: ctx.graceMs / 1000 } : {}) };
      return reply.code(healthy ? 200 : 503).send({ status: healthy ? 'ok' : 'degraded', backends, settlement });
    },
  );

  app.get(
    '/metrics',
    {
      preValidation: requireRole(STAFF),
      schema: {
        tags: ['ops'],
        summary: 'Prometheus metrics: HTTP requests plus the domain metrics of every component (admin, regulator)',
        produces: ['text/plain'],
        response: { 200: Type.String({ description: 'Prometheus text format' }), ...errorResponses(401, 403) },
      },
    },
    async (_request, reply) => {
      reply.header('content-type', ctx.metrics.contentType);
      return ctx.metrics.metrics();
    },
  );

  app.get(
    '/openapi.json',
    { schema: { tags: ['ops'], summary: 'This OpenAPI document (no auth)', security: [] } },
    async () => app.swagger(),
  );
}
