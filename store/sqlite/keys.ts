/**
 * The api_keys table (store/types.ts ApiKeyTable) in the shared SQLite file: one row per key with its
 * SHA-256 hash (unique), role, facility, display prefix and times; revoked rows stay, marked.
 * Generating, hashing and caching keys is the gateway's (gateway/keys.ts). Table: store/sqlite/schema.ts.
 */
import type { Db } from './db.ts';
import { migrate } from './schema.ts';
import { toApiKeyRow, toKeyOwner, type ApiKeyDbRow } from '../rows.ts';
import type { ApiKeyRole, ApiKeyRow, ApiKeyTable } from '../types.ts';

export class SqliteApiKeys implements ApiKeyTable {
  private readonly stmt;

  constructor(db: Db) {
    migrate(db);
    this.stmt = {
      insert: db.prepare('INSERT INTO api_keys (id, key_hash, role, facility_id, prefix, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      upsert: db.prepare(
        `INSERT INTO api_keys (id, key_hash, role, facility_id, prefix, created_at) VALUES (?, ?, ?, NULL, ?, ?)
         ON CONFLICT(id) DO UPDATE SET key_hash = excluded.key_hash, role = excluded.role, revoked_at = NULL`,
      ),
      byHash: db.prepare<[string], { id: string; role: ApiKeyRole; facility_id: string | null }>(
        'SELECT id, role, facility_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL',
      ),
      list: db.prepare<[], ApiKeyDbRow>(
        'SELECT id, role, facility_id, prefix, created_at, last_used_at FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id',
      ),
      revoke: db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
      touch: db.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?'),
      adminCount: db.prepare<[], number>("SELECT count(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL").pluck(),
    };
  }

  insert(row: ApiKeyRow & { keyHash: string }): void {
    this.stmt.insert.run(row.id, row.keyHash, row.role, row.facilityId ?? null, row.prefix, row.createdAt);
  }

  upsert(row: { id: string; keyHash: string; role: ApiKeyRole; prefix: string; createdAt: number }): void {
    this.stmt.upsert.run(row.id, row.keyHash, row.role, row.prefix, row.createdAt);
  }

  byHash(keyHash: string): { id: string; role: ApiKeyRole; facilityId?: string } | undefined {
    const r = this.stmt.byHash.get(keyHash);
    return r ? toKeyOwner(r) : undefined;
  }

  list(): ApiKeyRow[] {
    return this.stmt.list.all().map(toApiKeyRow);
  }

  revoke(id: string, at: number): boolean {
    return this.stmt.revoke.run(at, id).changes > 0;
  }

  touch(id: string, at: number): void {
    this.stmt.touch.run(at, id);
  }

  hasActiveAdmin(): boolean {
    return (this.stmt.adminCount.get() ?? 0) > 0;
  }
}
