/**
 * buildGateway(deps): the fastify instance with every route of the SPEC, not listening.
 * Order matters: authentication (onRequest) → rate limit per key/IP (route onRequest) →
 * role and scope (preValidation) → schema validation → handler.
 */
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Registry as PromRegistry } from 'prom-client';
import type { GatewayDeps } from './deps.ts';
import { createKeyStore, type KeyStore } from './keys.ts';
import { registerAuthentication } from './auth.ts';
import { createTtlCache, type TtlCache } from './cache.ts';
import { registerFacilityMetrics, registerHttpMetrics } from './metrics.ts';
import { toErrorResponse } from './errors.ts';
import { defaultOf } from '../domain/config.ts';
import { errors } from '../domain/errors.ts';
import { registerOpsRoutes } from './routes/ops.ts';
import { registerKeyRoutes } from './routes/keys.ts';
import { registerFacilityRoutes } from './routes/facilities.ts';
import { registerDeviceRoutes } from './routes/devices.ts';
import { registerReadingRoutes } from './routes/readings.ts';
import { registerWindowRoutes } from './routes/windows.ts';
import { registerSettlementRoutes } from './routes/settlements.ts';
import { registerRetirementRoutes } from './routes/retirements.ts';
import { registerCorrectionRoutes } from './routes/corrections.ts';
import { registerBatchRoutes } from './routes/batches.ts';
import { registerDashboardRoutes } from './routes/dashboard.ts';
import type { Logger } from '../domain/logger.ts';

/** What every route module gets. */
export interface GatewayContext {
  deps: GatewayDeps;
  keys: KeyStore;
  chainCache: TtlCache;
  metrics: PromRegistry;
  log: Logger;
  now: () => number;
  windowMs: number;
  /** Settlement grace, when configured (shown on /health). */
  graceMs?: number;
  /** The backend or a 503 BACKEND_UNAVAILABLE. */
  need<K extends 'readings' | 'ledger' | 'settlements' | 'audit'>(name: K): NonNullable<GatewayDeps[K]>;
}

export const API_VERSION = '1.0.0';

const BACKEND_NAMES = { readings: 'the reading store', ledger: 'the chain', settlements: "the oracle's records", audit: 'the settlement audit' } as const;

/** Content-Security-Policy for the API and dashboard: same-origin scripts, styles and fetches only. */
export const CSP_DIRECTIVES = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  fontSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'self'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
  scriptSrcAttr: ["'none'"],
  // Served over plain HTTP on a LAN too: upgrading would break the dashboard's own assets.
  upgradeInsecureRequests: null,
};

/**
 * The sha256 sources of the inline <style> elements Swagger UI creates at run time (its logo's SVG
 * carries one), read from the installed bundles so an upgrade that changes them keeps /docs clean.
 */
export function swaggerUiStyleHashes(): string[] {
  const dir = path.join(path.dirname(createRequire(import.meta.url).resolve('@fastify/swagger-ui/package.json')), 'static');
  const out = new Set<string>();
  for (const file of ['swagger-ui-standalone-preset.js', 'swagger-ui-bundle.js']) {
    let text: string;
    try {
      text = fs.readFileSync(path.join(dir, file), 'utf8');
    } catch {
      continue;
    }
    for (const m of text.matchAll(/createElement\("style",null,"((?:[^"\\]|\\.)*)"\)/g)) {
      const css = JSON.parse(`"${m[1]}"`) as string;
      out.add(`'sha256-${createHash('sha256').update(css, 'utf8').digest('base64')}'`);
    }
  }
  return [...out];
}

/** CSP of the /docs routes: the gateway's own policy plus exactly the inline styles Swagger UI creates. */
export function docsCsp(): string {
  const hashes = swaggerUiStyleHashes();
  const parts: string[] = [];
  for (const [k, v] of Object.entries(CSP_DIRECTIVES)) {
    if (v === null) continue;
    const name = k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    parts.push(`${name} ${(name === 'style-src' ? [...v, ...hashes] : v).join(' ')}`);
  }
  return parts.join('; ');
}

const HELMET_OPTIONS = {
  contentSecurityPolicy: { useDefaults: false, directives: CSP_DIRECTIVES },
  crossOriginEmbedderPolicy: false,
} as const;

/** The headers @fastify/helmet sets with HELMET_OPTIONS, read from one request to a throwaway instance. */
async function helmetHeaders(): Promise<Record<string, string>> {
  const probe = Fastify();
  try {
    await probe.register(helmet, { global: true, ...HELMET_OPTIONS });
    probe.get('/', async () => 'probe');
    const res = await probe.inject({ url: '/' });
    const skip = new Set(['content-type', 'content-length', 'date', 'connection', 'keep-alive']);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) if (!skip.has(k) && typeof v === 'string') out[k] = v;
    if (!out['content-security-policy']) throw new Error('helmet produced no CSP');
    return out;
  } finally {
    await probe.close();
  }
}

export async function buildGateway(deps: GatewayDeps): Promise<FastifyInstance> {
  const opts = deps.options ?? {};
  const now = deps.now ?? Date.now;
  const log = deps.logger.child({ component: 'gateway' });
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps FastifyInstance's default generic.
    loggerInstance: log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: !opts.logRequests }),
    // Without request logging a per-request child logger (reqId binding) only costs time.
    ...(opts.logRequests ? {} : { childLoggerFactory: (logger: FastifyBaseLogger) => logger }),
    bodyLimit: 64 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false, verbose: true } },
    // verbose: each ajv error carries its schema and the value given, for gateway/validation.ts.
    // Ids are short; refuse absurd URLs early.
    routerOptions: { maxParamLength: 200 },
  });

  const keys = createKeyStore(deps.apiKeys ?? deps.db, { cacheMs: opts.keyCacheMs ?? 5000, now });
  const metrics = deps.metrics ?? new PromRegistry();
  const ctx: GatewayContext = {
    deps,
    keys,
    chainCache: createTtlCache(opts.chainCacheMs ?? 1000, now),
    metrics,
    log,
    now,
    windowMs: (opts.windowSeconds ?? defaultOf('windowSeconds')) * 1000,
    ...(opts.graceSeconds !== undefined ? { graceMs: opts.graceSeconds * 1000 } : {}),
    need(name) {
      const b = deps[name];
      if (!b) throw errors.BACKEND_UNAVAILABLE(BACKEND_NAMES[name]);
      return b as NonNullable<GatewayDeps[typeof name]>;
    },
  };

  app.setErrorHandler((err, request, reply) => {
    const r = toErrorResponse(err);
    if (r.internal) request.log.error({ err, url: request.url }, 'request failed');
    else if (r.status >= 500) request.log.warn({ code: r.body.error.code, url: request.url }, r.body.error.message);
    return reply.code(r.status).send(r.body);
  });

  registerAuthentication(app, keys);
  registerHttpMetrics(app, metrics);
  registerFacilityMetrics(metrics, { registry: deps.registry, ...(deps.settlements ? { settlements: deps.settlements } : {}) });

  // Security headers as @fastify/helmet computes them, computed once: the plugin rebuilds its helmet
  // middleware (re-parsing the CSP) on every request, which cost ~11% of a cached balance read.
  const securityHeaders = await helmetHeaders();
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(securityHeaders);
    done();
  });

  await app.register(rateLimit, {
    global: true,
    max: opts.rateLimitMax ?? 300,
    timeWindow: opts.rateLimitWindowMs ?? 60_000,
    // Per API key when the key is valid, per client IP otherwise (so random keys do not buy quota).
    keyGenerator: (request) => (request.principal ? `key:${request.principal.keyId}` : `ip:${request.ip}`),
    errorResponseBuilder: () => errors.RATE_LIMITED(),
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Carbon MRV gateway',
        version: API_VERSION,
        description: 'Facilities, devices, readings, settlements with their evidence, credits and retirements. See docs/API.md.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'API key' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // The gateway's CSP (not the plugin's looser default: https: styles and fonts, a validator host),
    // with the hash of the one inline style Swagger UI creates; only on the /docs routes.
    staticCSP: docsCsp(),
  });

  app.setNotFoundHandler({ preHandler: app.rateLimit() }, (request, reply) => {
    const r = toErrorResponse(errors.ROUTE_NOT_FOUND(request.method, request.url));
    return reply.code(r.status).send(r.body);
  });

  registerOpsRoutes(app, ctx);
  registerKeyRoutes(app, ctx);
  registerFacilityRoutes(app, ctx);
  registerDeviceRoutes(app, ctx);
  registerReadingRoutes(app, ctx);
  registerWindowRoutes(app, ctx);
  registerSettlementRoutes(app, ctx);
  registerRetirementRoutes(app, ctx);
  registerCorrectionRoutes(app, ctx);
  registerBatchRoutes(app, ctx);
  registerDashboardRoutes(app, ctx);

  return app;
}
