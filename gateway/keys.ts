/**
 * API keys: 256-bit random secrets shown once, stored as SHA-256 hashes in the shared SQLite file
 * (the api_keys table: store/sqlite/keys.ts).
 *
 * Why a fast hash is enough here: a slow salted hash protects low-entropy human passwords from
 * offline guessing. These keys are 32 random bytes, so inverting the hash means searching 2^256
 * values whatever the hash speed; a plain SHA-256 loses nothing and lets every request be checked
 * with one indexed lookup (no salt needed either: equal hashes would need equal random keys).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Db } from '../store/sqlite/db.ts';
import { SqliteApiKeys } from '../store/sqlite/keys.ts';
import type { ApiKeyRole, ApiKeyRow, ApiKeyTable, Awaitable } from '../store/types.ts';
import type { Logger } from '../domain/logger.ts';
import { errors } from '../domain/errors.ts';

export const ROLES = ['admin', 'regulator', 'facility'] as const satisfies readonly ApiKeyRole[];
export type Role = (typeof ROLES)[number];

export interface Principal {
  keyId: string;
  role: Role;
  facilityId?: string;
}

/** A key as listed (never the key itself): the api_keys row. */
export type ApiKeyInfo = ApiKeyRow;

const KEY_PREFIX = 'mrv_';
const KEY_RE = /^mrv_[A-Za-z0-9_-]{43}$/;
export const ADMIN_KEY_FILE = 'admin-api-key';

export function hashKey(key: string): string {
  return crypto.createHash('sha256').update(key).digest('hex');
}

export function generateKey(): string {
  return KEY_PREFIX + crypto.randomBytes(32).toString('base64url');
}

/** Writes are Awaitable: synchronous on the SQLite table, a promise on PostgreSQL's (store/postgres/keys.ts). */
export interface KeyStore {
  create(role: Role, facilityId?: string): Awaitable<{ info: ApiKeyInfo; key: string }>;
  /** Registers a key supplied from outside (ADMIN_API_KEY) under a fixed id; replaces that id's hash. */
  upsertKnown(id: string, key: string, role: Role): Awaitable<void>;
  list(): ApiKeyInfo[];
  revoke(id: string): Awaitable<boolean>;
  /** The principal for a presented key, or undefined. Cached in memory for `cacheMs`. */
  authenticate(key: string): Principal | undefined;
  hasActiveAdmin(): boolean;
}

/** The key store of the SQLite file: every method synchronous. */
export interface SyncKeyStore extends KeyStore {
  create(role: Role, facilityId?: string): { info: ApiKeyInfo; key: string };
  upsertKnown(id: string, key: string, role: Role): void;
  revoke(id: string): boolean;
}

/** `f(v)`, after `v` settles when it is a promise, at once otherwise. */
function then<T, U>(v: Awaitable<T>, f: (t: T) => U): Awaitable<U> {
  return v instanceof Promise ? v.then(f) : f(v);
}

function isTable(source: Db | ApiKeyTable): source is ApiKeyTable {
  return typeof (source as ApiKeyTable).byHash === 'function';
}

/** Keys on the SQLite file `db` (synchronous), or on a given table (PostgreSQL: store/postgres/keys.ts). */
export function createKeyStore(db: Db, opts?: { cacheMs?: number; now?: () => number }): SyncKeyStore;
export function createKeyStore(source: Db | ApiKeyTable, opts?: { cacheMs?: number; now?: () => number }): KeyStore;
export function createKeyStore(source: Db | ApiKeyTable, opts: { cacheMs?: number; now?: () => number } = {}): KeyStore {
  const now = opts.now ?? Date.now;
  const cacheMs = opts.cacheMs ?? 5000;
  const table: ApiKeyTable = isTable(source) ? source : new SqliteApiKeys(source);
  const cache = new Map<string, { p: Principal; until: number }>();
  const MAX_CACHE = 10_000;

  return {
    create(role, facilityId) {
      if (role === 'facility' && !facilityId) throw errors.VALIDATION('a facility key needs facilityId');
      if (role !== 'facility' && facilityId) throw errors.VALIDATION(`a ${role} key takes no facilityId`);
      const key = generateKey();
      const id = 'key_' + crypto.randomBytes(8).toString('hex');
      const createdAt = now();
      const done = table.insert({ id, keyHash: hashKey(key), role, ...(facilityId ? { facilityId } : {}), prefix: key.slice(0, 10), createdAt });
      return then(done, () => ({ info: { id, role, ...(facilityId ? { facilityId } : {}), prefix: key.slice(0, 10), createdAt }, key }));
    },
    upsertKnown(id, key, role) {
      const done = table.upsert({ id, keyHash: hashKey(key), role, prefix: KEY_RE.test(key) ? key.slice(0, 10) : '(configured)', createdAt: now() });
      cache.clear();
      return then(done, () => cache.clear());
    },
    list() {
      return table.list();
    },
    revoke(id) {
      return then(table.revoke(id, now()), (changed) => {
        if (changed) cache.clear();
        return changed;
      });
    },
    authenticate(key) {
      if (key.length === 0 || key.length > 200) return undefined;
      const t = now();
      // Keyed by the presented key (only valid ones are cached, for cacheMs): a hit skips the hash.
      const hit = cache.get(key);
      if (hit && hit.until > t) return hit.p;
      const r = table.byHash(hashKey(key));
      if (!r) {
        cache.delete(key);
        return undefined;
      }
      const p: Principal = { keyId: r.id, role: r.role, ...(r.facilityId ? { facilityId: r.facilityId } : {}) };
      // At most once per cache period per key; a failed write of the last use is not worth a refusal.
      const touched = table.touch(r.id, t);
      if (touched instanceof Promise) touched.catch(() => undefined);
      if (cache.size >= MAX_CACHE) cache.clear();
      cache.set(key, { p, until: t + cacheMs });
      return p;
    },
    hasActiveAdmin() {
      return table.hasActiveAdmin();
    },
  };
}

export type AdminKeySource = 'config' | 'existing' | 'file' | 'generated';

/**
 * Makes sure an admin key exists. With a configured key (ADMIN_API_KEY) that key is the admin key.
 * Otherwise, on first start, a key is generated and written once to DATA_DIR/admin-api-key with mode
 * 0600 (never overwritten; if the file is there but the database was reset, the file's key is
 * registered again). Logs the file path, never the key.
 */
export async function bootstrapAdminKey(
  keys: KeyStore,
  opts: { configuredKey?: string; dataDir: string; logger: Logger },
): Promise<{ source: AdminKeySource; file?: string }> {
  const file = path.join(opts.dataDir, ADMIN_KEY_FILE);
  if (opts.configuredKey) {
    if (opts.configuredKey.length < 16) throw errors.CONFIG_INVALID('ADMIN_API_KEY must be at least 16 characters');
    await keys.upsertKnown('admin-config', opts.configuredKey, 'admin');
    opts.logger.info('admin API key taken from ADMIN_API_KEY');
    return { source: 'config' };
  }
  if (keys.hasActiveAdmin()) return { source: 'existing', ...(fs.existsSync(file) ? { file } : {}) };
  if (fs.existsSync(file)) {
    const key = fs.readFileSync(file, 'utf8').trim();
    if (!KEY_RE.test(key)) throw errors.CONFIG_INVALID(`${file} does not hold an API key; remove it to generate a new one`);
    await keys.upsertKnown('admin-initial', key, 'admin');
    opts.logger.info({ file }, 'admin API key registered again from its file');
    return { source: 'file', file };
  }
  fs.mkdirSync(opts.dataDir, { recursive: true });
  const key = generateKey();
  // 'wx': fail rather than overwrite; mode applies at creation.
  fs.writeFileSync(file, key + '\n', { flag: 'wx', mode: 0o600 });
  await keys.upsertKnown('admin-initial', key, 'admin');
  opts.logger.warn({ file }, 'generated the initial admin API key; read it from this file (owner-only)');
  return { source: 'generated', file };
}
