/** HTTP metrics on the shared prom-client registry: request count and duration by route and status. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
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

/** What the per-facility gauges read at scrape time. */
export interface FacilityMetricSource {
  registry: Pick<import('../store/types.ts').FacilityRegistry, 'listFacilities' | 'listDevices'>;
  settlements?: Pick<import('./deps.ts').GatewaySettlements, 'listSettlements' | 'facilityStatus'>;
}

const facilitySources = new WeakMap<Registry, FacilityMetricSource>();

/**
 * Per-facility gauges, computed at scrape time from the registry and the oracle's records: one series
 * per facility each (bounded by the number of facilities), each read through an index (the
 * facility's newest settlement, its devices), never a scan of the readings or of every settlement.
 */
interface FacilitySnapshot {
  id: string;
  active: boolean;
  devices: Map<string, number>;
  online: number;
  blocked?: boolean;
  newest?: { windowEnd: number; netGrams: number };
}

/** One read of every facility (devices through their index, the newest settlement through the window index). */
async function snapshot(src: FacilityMetricSource): Promise<FacilitySnapshot[]> {
  const out: FacilitySnapshot[] = [];
  for (const f of src.registry.listFacilities()) {
    const devices = new Map<string, number>([['active', 0], ['suspended', 0], ['decommissioned', 0]]);
    let online = 0;
    for (const d of src.registry.listDevices(f.id)) {
      devices.set(d.status, (devices.get(d.status) ?? 0) + 1);
      if (d.online) online++;
    }
    const snap: FacilitySnapshot = { id: f.id, active: f.status === 'active', devices, online };
    if (src.settlements) {
      const st = await src.settlements.facilityStatus?.(f.id);
      if (st) snap.blocked = st.settlementStatus === 'blocked';
      const rows = await src.settlements.listSettlements({ facilityId: f.id, newestFirst: true, limit: 1 });
      const newest = rows.reduce<(typeof rows)[number] | undefined>((a, x) => (!a || x.windowStart > a.windowStart ? x : a), undefined);
      // Gauges are floats: the exact figure is in the API; a net beyond 2^53 g (9 Mt) is not a metric's concern.
      if (newest) snap.newest = { windowEnd: newest.windowEnd, netGrams: Number(newest.netGrams) };
    }
    out.push(snap);
  }
  return out;
}

/**
 * Per-facility gauges, computed at scrape time from the registry and the oracle's records: one series
 * per facility each (bounded by the number of facilities), each read through an index (the
 * facility's devices, its newest settlement), never a scan of the readings or of every settlement.
 * prom-client collects the gauges of one scrape concurrently: they share one snapshot per scrape.
 */
export function registerFacilityMetrics(registry: Registry, source: FacilityMetricSource): void {
  facilitySources.set(registry, source);
  if (registry.getSingleMetric('mrv_facility_active')) return;
  let pending: Promise<FacilitySnapshot[]> | undefined;
  let pendingAt = 0;
  const shared = (): Promise<FacilitySnapshot[]> => {
    const now = Date.now();
    if (!pending || now - pendingAt > 250) {
      const src = facilitySources.get(registry);
      pending = src ? snapshot(src) : Promise.resolve([]);
      pendingAt = now;
    }
    return pending;
  };
  const gauge = (name: string, help: string, fill: (g: Gauge<string>, f: FacilitySnapshot) => void, labelNames: string[] = ['facility']) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const all = await shared();
        this.reset();
        for (const f of all) fill(this, f);
      },
    });
  gauge('mrv_facility_active', '1 while the facility is active, 0 while suspended', (g, f) => g.set({ facility: f.id }, f.active ? 1 : 0));
  gauge('mrv_facility_devices', 'devices of the facility, by status', (g, f) => {
    for (const [status, n] of f.devices) g.set({ facility: f.id, status }, n);
  }, ['facility', 'status']);
  gauge('mrv_facility_devices_online', 'devices of the facility connected to the broker now', (g, f) => g.set({ facility: f.id }, f.online));
  gauge('mrv_facility_settlement_blocked', "1 while the chain refuses the facility's settlement (the oracle retries with backoff)", (g, f) => {
    if (f.blocked !== undefined) g.set({ facility: f.id }, f.blocked ? 1 : 0);
  });
  gauge('mrv_facility_last_settlement_net_grams', "net grams CO2e of the facility's newest settlement", (g, f) => {
    if (f.newest) g.set({ facility: f.id }, f.newest.netGrams);
  });
  gauge('mrv_facility_last_settled_window_end_seconds', "end of the facility's newest settled window (UNIX seconds); time() minus it is the settlement lag", (g, f) => {
    if (f.newest) g.set({ facility: f.id }, f.newest.windowEnd / 1000);
  });
}
