/**
 * Self-registration through the gateway HTTP API (SPEC "HTTP gateway"): each planned facility is
 * created with a baseline suggested for its profile (409: it exists, reuse it), each device is
 * created (201 gives its password) or, when it exists, gets a fresh secret by rotation. Also what
 * the simulator reads back: the platform's rejection count (/metrics) and rejection log per
 * facility (the summary's rejections by reason), and the stack's windows (GET /health).
 */
import type { Logger } from '../domain/logger.ts';
import { DomainError } from '../domain/errors.ts';
import { simErrors } from './errors.ts';
import type { FacilityPlan, SimCredentials } from './plan.ts';
import { getProfile, suggestBaseline } from './profiles.ts';

export interface ApiTarget {
  /** Gateway base URL, e.g. http://127.0.0.1:3000 */
  url: string;
  /** Admin (or regulator) API key. */
  key: string;
}

export interface RegisterOptions {
  windowSeconds: number;
  rate: number;
  margin?: number;
  now?: number;
  log: Logger;
  fetch?: typeof fetch;
  /** Signing devices: their Ed25519 public key (hex) by device id, sent as `publicKey`. */
  publicKeys?: Record<string, string>;
}

interface ApiResult {
  status: number;
  body: unknown;
}

export function apiClient(api: ApiTarget, fetchImpl: typeof fetch = fetch) {
  let base: URL;
  try {
    base = new URL(api.url);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('use http:// or https://');
  } catch (err) {
    throw simErrors.USAGE(`--api: bad gateway URL ${JSON.stringify(api.url)}: ${(err as Error).message}`);
  }
  return async function call(method: string, path: string, body?: unknown): Promise<ApiResult> {
    const url = new URL(path, base);
    let res: Response;
    try {
      res = await fetchImpl(url, {
        method,
        headers: { authorization: `Bearer ${api.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw simErrors.API_FAILED(`cannot reach the gateway at ${base.origin}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* keep the text */
    }
    return { status: res.status, body: parsed };
  };
}

function describe(r: ApiResult): string {
  const e = (r.body as { error?: { code?: string; message?: string } } | undefined)?.error;
  return e ? `${r.status} ${e.code ?? ''} ${e.message ?? ''}`.trim() : `${r.status} ${String(r.body ?? '').slice(0, 200)}`;
}

/** Registers the plan and returns fresh credentials for every device. Baselines land in the plan. */
export async function registerFleet(api: ApiTarget, plan: FacilityPlan[], opts: RegisterOptions): Promise<SimCredentials[]> {
  const call = apiClient(api, opts.fetch);
  const creds: SimCredentials[] = [];
  for (const f of plan) {
    const suggestion = suggestBaseline(getProfile(f.profile), {
      kinds: f.devices.map((d) => d.kind),
      windowSeconds: opts.windowSeconds,
      rate: opts.rate,
      outcome: f.outcome,
      margin: opts.margin,
      from: opts.now,
    });
    const r = await call('POST', '/v1/facilities', { id: f.facilityId, name: f.name, owner: f.owner, baselineKgPerHour: suggestion.baselineKgPerHour });
    if (r.status === 401 || r.status === 403) throw simErrors.API_FAILED(`the gateway refused the API key: ${describe(r)}`);
    if (r.status === 201) {
      opts.log.info({ facilityId: f.facilityId, profile: f.profile, outcome: f.outcome, baselineKgPerHour: suggestion.baselineKgPerHour }, 'facility registered');
    } else if (r.status === 409) {
      opts.log.info({ facilityId: f.facilityId }, 'facility exists, reusing it');
      if (f.ownerKeyFile) {
        const existing = await call('GET', `/v1/facilities/${encodeURIComponent(f.facilityId)}`);
        const owner = (existing.body as { owner?: unknown } | undefined)?.owner;
        if (existing.status === 200 && typeof owner === 'string' && owner.toLowerCase() !== f.owner.toLowerCase()) {
          opts.log.warn(
            { facilityId: f.facilityId, owner, keyFile: f.ownerKeyFile, keyAddress: f.owner },
            'facility exists with another owner than its kept key: its credits cannot be retired with that key (registered by an older version or by hand)',
          );
          f.owner = owner;
          delete f.ownerKeyFile;
        }
      }
    } else {
      throw simErrors.API_FAILED(`registering facility ${f.facilityId} failed: ${describe(r)}`);
    }
    for (const d of f.devices) {
      const publicKey = opts.publicKeys?.[d.deviceId];
      const created = await call('POST', `/v1/facilities/${encodeURIComponent(f.facilityId)}/devices`, { deviceId: d.deviceId, kind: d.kind, ...(publicKey ? { publicKey } : {}) });
      let password: unknown;
      if (created.status === 201) {
        password = (created.body as { password?: unknown }).password;
      } else if (created.status === 409) {
        // A signing device (re)states its key: the platform records it (on chain) when it changed.
        const rotated = await call('PATCH', `/v1/devices/${encodeURIComponent(d.deviceId)}`, { rotateSecret: true, ...(publicKey ? { publicKey } : {}) });
        if (rotated.status !== 200) {
          throw simErrors.API_FAILED(`device ${d.deviceId} exists and its secret could not be rotated (${describe(rotated)}); pass --credentials instead`);
        }
        password = (rotated.body as { password?: unknown }).password;
        opts.log.info({ deviceId: d.deviceId }, 'device exists, secret rotated');
      } else {
        throw simErrors.API_FAILED(`registering device ${d.deviceId} failed: ${describe(created)}`);
      }
      if (typeof password !== 'string') throw simErrors.API_FAILED(`the gateway returned no password for device ${d.deviceId}`);
      d.password = password;
      creds.push({ facilityId: f.facilityId, deviceId: d.deviceId, password, kind: d.kind });
    }
  }
  return creds;
}

/**
 * Reads the platform's count of rejected readings from the gateway's Prometheus text
 * (`mrv_readings_rejected_total`, all reasons); undefined when it is not available.
 */
export function rejectedCounter(api: ApiTarget, fetchImpl: typeof fetch = fetch): () => Promise<number | undefined> {
  const call = apiClient(api, fetchImpl);
  return async () => {
    try {
      const r = await call('GET', '/metrics');
      if (r.status !== 200 || typeof r.body !== 'string') return undefined;
      let sum = 0;
      let found = false;
      for (const line of r.body.split('\n')) {
        const m = /^mrv_readings_rejected_total(?:\{[^}]*\})?\s+([0-9.eE+-]+)/.exec(line);
        if (m) {
          sum += Number(m[1]);
          found = true;
        }
      }
      // a labelled counter has no sample line before its first increment: that is 0, not unknown
      return found || r.body.includes('mrv_readings_') ? sum : undefined;
    } catch {
      return undefined;
    }
  };
}

/** The rejection rows of some facilities at one moment: count per (device, reason, first refusal). */
export interface RejectionSnapshot {
  rows: Map<string, { reason: string; count: number }>;
  /** A facility had a full page (the oldest rows may be missing): counts are lower bounds. */
  truncated: boolean;
}

const REJECTION_PAGE = 1000;

/**
 * Reads `GET /v1/facilities/{id}/rejections` of each facility (the platform's log, where rows of one
 * device, reason and minute are counted together); undefined when a facility cannot be read.
 */
export function rejectionLog(api: ApiTarget, fetchImpl: typeof fetch = fetch): (facilityIds: string[]) => Promise<RejectionSnapshot | undefined> {
  const call = apiClient(api, fetchImpl);
  return async (facilityIds) => {
    const snap: RejectionSnapshot = { rows: new Map(), truncated: false };
    for (const id of facilityIds) {
      let r: ApiResult;
      try {
        r = await call('GET', `/v1/facilities/${encodeURIComponent(id)}/rejections?limit=${REJECTION_PAGE}`);
      } catch {
        return undefined;
      }
      const items = (r.body as { items?: unknown } | undefined)?.items;
      if (r.status !== 200 || !Array.isArray(items)) return undefined;
      if (items.length >= REJECTION_PAGE) snap.truncated = true;
      for (const it of items as { deviceId?: unknown; reason?: unknown; receivedAt?: unknown; count?: unknown }[]) {
        const reason = String(it.reason);
        const count = typeof it.count === 'number' && it.count > 1 ? it.count : 1;
        const key = `${id}|${String(it.deviceId)}|${reason}|${String(it.receivedAt)}`;
        snap.rows.set(key, { reason, count: (snap.rows.get(key)?.count ?? 0) + count });
      }
    }
    return snap;
  };
}

/** Rejections logged between two snapshots, by reason. */
export function rejectionDelta(before: RejectionSnapshot, after: RejectionSnapshot): { byReason: Record<string, number>; truncated: boolean } {
  const byReason: Record<string, number> = {};
  for (const [key, row] of after.rows) {
    const n = row.count - (before.rows.get(key)?.count ?? 0);
    if (n > 0) byReason[row.reason] = (byReason[row.reason] ?? 0) + n;
  }
  return { byReason, truncated: before.truncated || after.truncated };
}

/** The windows the stack settles, from its gateway's `GET /health`; undefined when it does not say. */
export async function stackSettlement(api: ApiTarget, fetchImpl: typeof fetch = fetch): Promise<{ windowSeconds: number; graceSeconds?: number } | undefined> {
  try {
    const r = await apiClient(api, fetchImpl)('GET', '/health');
    const s = (r.body as { settlement?: { windowSeconds?: unknown; graceSeconds?: unknown } } | undefined)?.settlement;
    if (!s || !Number.isInteger(s.windowSeconds) || (s.windowSeconds as number) < 1) return undefined;
    return { windowSeconds: s.windowSeconds as number, ...(Number.isInteger(s.graceSeconds) && (s.graceSeconds as number) >= 0 ? { graceSeconds: s.graceSeconds as number } : {}) };
  } catch (err) {
    if (err instanceof DomainError && err.code === simErrors.USAGE.code) throw err; // a bad --api URL
    return undefined;
  }
}
