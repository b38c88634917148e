/**
 * The two InfluxDB HTTP API generations, on Node's fetch:
 * - 2.x: writes `POST /api/v2/write?org=&bucket=&precision=ns` with `Authorization: Token …`; reads
 *   InfluxQL through the v1-compatibility `GET /query?db=&rp=` (the bucket's DBRP mapping; 2.x creates
 *   a virtual one per bucket, db = bucket name, rp = autogen), same token header.
 * - 1.x: writes `POST /write?db=&rp=&precision=ns`, reads `GET /query?db=&rp=`, optional Basic auth.
 * Both: optional gzip request bodies, `epoch=` on reads so times come back as integers.
 */
import { gzip as gzipCb } from 'node:zlib';
import { promisify } from 'node:util';
import { errors } from '../../domain/errors.ts';

const gzip = promisify(gzipCb);

export interface InfluxConnection {
  url: string;
  token?: string;
  org?: string;
  bucket?: string;
  database?: string;
  retentionPolicy?: string;
  username?: string;
  password?: string;
}

export interface InfluxTarget {
  api: 'v1' | 'v2';
  writeUrl: string;
  /** URL of a read, without the q parameter. */
  queryUrl(epoch: 'ns' | 'ms'): string;
  pingUrl: string;
  headers: Record<string, string>;
  /** For logs: where we write, without credentials. */
  describe: string;
}

/** Chooses the API: a bucket selects 2.x (needs org and token), otherwise a database selects 1.x. */
export function resolveTarget(c: InfluxConnection): InfluxTarget {
  let base: URL;
  try {
    base = new URL(c.url);
  } catch {
    throw errors.CONFIG_INVALID(`INFLUX_URL is not a URL: ${c.url}`);
  }
  const root = base.href.replace(/\/+$/, '');
  const headers: Record<string, string> = {};
  if (c.bucket !== undefined) {
    if (!c.org || !c.token) throw errors.CONFIG_INVALID('InfluxDB 2.x needs INFLUX_ORG and INFLUX_TOKEN with INFLUX_BUCKET');
    headers.authorization = `Token ${c.token}`;
    const db = c.database ?? c.bucket;
    const write = new URLSearchParams({ org: c.org, bucket: c.bucket, precision: 'ns' });
    return {
      api: 'v2',
      writeUrl: `${root}/api/v2/write?${write}`,
      queryUrl: (epoch) => `${root}/query?${readParams(db, c.retentionPolicy, epoch)}`,
      pingUrl: `${root}/ping`,
      headers,
      describe: `${root} (2.x, org ${c.org}, bucket ${c.bucket})`,
    };
  }
  if (c.database === undefined) throw errors.CONFIG_INVALID('InfluxDB needs INFLUX_BUCKET (2.x API) or INFLUX_DATABASE (1.x API)');
  if (c.username !== undefined || c.password !== undefined) {
    headers.authorization = 'Basic ' + Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64');
  } else if (c.token) {
    // InfluxDB 1.8+ also accepts a token ("user:password" for 1.x) on its 1.x endpoints.
    headers.authorization = `Token ${c.token}`;
  }
  const write = new URLSearchParams({ db: c.database, precision: 'ns' });
  if (c.retentionPolicy) write.set('rp', c.retentionPolicy);
  return {
    api: 'v1',
    writeUrl: `${root}/write?${write}`,
    queryUrl: (epoch) => `${root}/query?${readParams(c.database as string, c.retentionPolicy, epoch)}`,
    pingUrl: `${root}/ping`,
    headers,
    describe: `${root} (1.x, database ${c.database}${c.retentionPolicy ? `, rp ${c.retentionPolicy}` : ''})`,
  };
}

function readParams(db: string, rp: string | undefined, epoch: string): URLSearchParams {
  const p = new URLSearchParams({ db, epoch });
  if (rp) p.set('rp', rp);
  return p;
}

/** A failed write or query; `retryable` for network errors, timeouts, 429 and 5xx. */
export class InfluxHttpError extends Error {
  readonly status?: number;
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean, status?: number) {
    super(message);
    this.name = 'InfluxHttpError';
    this.retryable = retryable;
    this.status = status;
  }
}

function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

async function send(url: string, init: RequestInit, timeoutMs: number, signal?: AbortSignal): Promise<Response> {
  const timeout = AbortSignal.timeout(timeoutMs);
  try {
    return await fetch(url, { ...init, signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    const why = e.name === 'TimeoutError' ? `timed out after ${timeoutMs} ms` : (e.cause?.code ?? e.message);
    throw new InfluxHttpError(`request failed: ${why}`, !signal?.aborted);
  }
}

/** Prepares a write body once (gzip is done once, not per retry). */
export interface PreparedBody {
  body: Uint8Array<ArrayBuffer>;
  gzip: boolean;
}

export async function prepareBody(lines: string, useGzip: boolean): Promise<PreparedBody> {
  const raw = new TextEncoder().encode(lines);
  if (!useGzip) return { body: raw, gzip: false };
  return { body: new Uint8Array(await gzip(raw)), gzip: true };
}

/** One write request; resolves on 2xx, throws InfluxHttpError otherwise. */
export async function writeBody(
  target: InfluxTarget,
  prepared: PreparedBody,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const headers: Record<string, string> = { ...target.headers, 'content-type': 'text/plain; charset=utf-8' };
  if (prepared.gzip) headers['content-encoding'] = 'gzip';
  const res = await send(target.writeUrl, { method: 'POST', headers, body: prepared.body }, timeoutMs, signal);
  if (res.status >= 200 && res.status < 300) {
    await res.arrayBuffer().catch(() => undefined);
    return;
  }
  const text = (await res.text().catch(() => '')).slice(0, 500);
  throw new InfluxHttpError(`write answered ${res.status}: ${text}`, retryableStatus(res.status), res.status);
}

export interface Series {
  name: string;
  tags?: Record<string, string>;
  columns: string[];
  values: unknown[][];
}

interface QueryResponse {
  results?: { statement_id?: number; error?: string; partial?: boolean; series?: (Series & { partial?: boolean })[] }[];
  error?: string;
}

/**
 * Runs InfluxQL statements (`;`-separated) and returns the series of each statement, in order.
 * A statement error, or a result the server truncated (`partial`), throws: never a silent half answer.
 */
export async function query(
  target: InfluxTarget,
  q: string,
  epoch: 'ns' | 'ms',
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Series[][]> {
  const url = `${target.queryUrl(epoch)}&${new URLSearchParams({ q })}`;
  const res = await send(url, { method: 'GET', headers: { ...target.headers, accept: 'application/json' } }, timeoutMs, signal);
  const text = await res.text();
  if (res.status !== 200) throw new InfluxHttpError(`query answered ${res.status}: ${text.slice(0, 500)}`, retryableStatus(res.status), res.status);
  let body: QueryResponse;
  try {
    body = JSON.parse(text) as QueryResponse;
  } catch {
    throw new InfluxHttpError('query answer is not JSON', false, res.status);
  }
  if (body.error) throw new InfluxHttpError(`query failed: ${body.error}`, false, res.status);
  const out: Series[][] = [];
  for (const r of body.results ?? []) {
    if (r.error) throw new InfluxHttpError(`query failed: ${r.error}`, false, res.status);
    if (r.partial || r.series?.some((s) => s.partial)) throw new InfluxHttpError('query result was truncated by the server (max-row-limit)', false, res.status);
    out.push(r.series ?? []);
  }
  return out;
}

export async function ping(target: InfluxTarget, timeoutMs: number): Promise<boolean> {
  try {
    const res = await send(target.pingUrl, { method: 'GET', headers: target.headers }, timeoutMs);
    await res.arrayBuffer().catch(() => undefined);
    return res.status >= 200 && res.status < 300;
  } catch {
    return false;
  }
}
