/** HTTP metrics on the shared prom-client registry: request count and duration by route and status. */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { FastifyInstance } from 'fastify';

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function registerHttpMetrics(app: FastifyInstance, registry: Registry): void {
  const labelNames = ['method', 'route', 'status'] as const;
  const requests = getOrCreate(
    registry,
    'mrv_http_requests_total',
    () => new Counter({ name: 'mrv_http_requests_total', help: 'HTTP requests served by the gateway', labelNames, registers: [registry] }),
  );
  const duration = getOrCreate(
    registry,
    'mrv_http_request_duration_seconds',
    () =>
      new Histogram({
        name: 'mrv_http_request_duration_seconds',
        help: 'HTTP request duration in the gateway',
        labelNames,
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers: [registry],
      }),
  );
  // Labelled children cached per (method, route, status): prom-client hashes the labels on every
  // call otherwise. Bounded: routes are patterns, methods and statuses are few.
  const children = new Map<string, { count: { inc(): void }; time: { observe(v: number): void } }>();
  app.addHook('onResponse', (request, reply, done) => {
    // The route pattern, never the raw URL: ids in paths must not explode label cardinality.
    const route = request.routeOptions.url ?? 'unmatched';
    const status = String(reply.statusCode);
    const k = `${request.method} ${route} ${status}`;
    let c = children.get(k);
    if (!c) {
      c = { count: requests.labels(request.method, route, status), time: duration.labels(request.method, route, status) };
      if (children.size < 2000) children.set(k, c);
    }
    c.count.inc();
    c.time.observe(reply.elapsedTime / 1000);
    done();
  });
}
