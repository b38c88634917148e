/**
 * The API key table on PostgreSQL (`api_keys`, store/postgres/schema.ts), with an in-process replica
 * like the registry's (store/postgres/registry.ts): the per-request lookup by hash is synchronous, the
 * replica is loaded when the LISTEN connection (store/postgres/listen.ts) connects and each key row is
 * re-read when its notice arrives, so a key revoked through one gateway stops working on every other
 * gateway as soon as the notice arrives (plus that gateway's cache, gateway/keys.ts, at most
 * keyCacheMs). Writes are asynchronous; the writer's replica takes the row before the write resolves.
 * `touch` (last use) is written without a notice.
 */
import type pg from 'pg';
import { silentLogger, type Logger } from '../../domain/logger.ts';
import { toApiKeyRow, toKeyOwner, type ApiKeyDbRow } from '../rows.ts';
import type { ApiKeyRole, ApiKeyRow, ApiKeyTable } from '../types.ts';
import type { NoticeSubscriber, RegistryListener, RegistryNotice } from './listen.ts';
import { serialQueue } from './serial.ts';

interface Row extends ApiKeyDbRow {
  key_hash: string;
  revoked_at: number | null;
}

const COLS = 'id, key_hash, role, facility_id, prefix, created_at, last_used_at, revoked_at';

export class PgApiKeys implements ApiKeyTable, NoticeSubscriber {
  private readonly pool: pg.Pool;
  private readonly logger: Logger;
  private readonly byId = new Map<string, Row>();
  private readonly idByHash = new Map<string, string>();
  /** Replica updates, one after the other. */
  private readonly serial = serialQueue();

  constructor(pool: pg.Pool, opts: { logger?: Logger } = {}) {
    this.pool = pool;
    this.logger = opts.logger ?? silentLogger;
  }

  attach(listener: RegistryListener): void {
    listener.add(this);
  }

  private put(id: string, r: Row | undefined): void {
    const old = this.byId.get(id);
    if (old) this.idByHash.delete(old.key_hash);
    if (!r) {
      this.byId.delete(id);
      return;
    }
    this.byId.set(id, r);
    this.idByHash.set(r.key_hash, id);
  }

  notice(n: RegistryNotice): void {
    if (n.t !== 'k') return;
    this.serial(async () => {
      const res = await this.pool.query<Row>(`SELECT ${COLS} FROM api_keys WHERE id = $1`, [n.id]);
      this.put(n.id, res.rows[0]);
    }).catch((err: unknown) => {
      this.logger.warn({ err }, 'API key re-read failed; full reload');
      this.resync().catch((e: unknown) => this.logger.error({ err: e }, 'API key reload failed'));
    });
  }

  resync(): Promise<void> {
    return this.serial(async () => {
      const res = await this.pool.query<Row>(`SELECT ${COLS} FROM api_keys`);
      this.byId.clear();
      this.idByHash.clear();
      for (const r of res.rows) this.put(r.id, r);
    });
  }

  private async write(sql: string, values: unknown[]): Promise<Row[]> {
    const res = await this.pool.query<Row>(`${sql} RETURNING ${COLS}`, values);
    await this.serial(() => {
      for (const r of res.rows) this.put(r.id, r);
    });
    return res.rows;
  }

  async insert(row: ApiKeyRow & { keyHash: string }): Promise<void> {
    await this.write('INSERT INTO api_keys (id, key_hash, role, facility_id, prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      row.id,
      row.keyHash,
      row.role,
      row.facilityId ?? null,
      row.prefix,
      row.createdAt,
    ]);
  }

  async upsert(row: { id: string; keyHash: string; role: ApiKeyRole; prefix: string; createdAt: number }): Promise<void> {
    await this.write(
      `INSERT INTO api_keys (id, key_hash, role, facility_id, prefix, created_at) VALUES ($1, $2, $3, NULL, $4, $5)
       ON CONFLICT (id) DO UPDATE SET key_hash = excluded.key_hash, role = excluded.role, revoked_at = NULL`,
      [row.id, row.keyHash, row.role, row.prefix, row.createdAt],
    );
  }

  byHash(keyHash: string): { id: string; role: ApiKeyRole; facilityId?: string } | undefined {
    const id = this.idByHash.get(keyHash);
    const r = id === undefined ? undefined : this.byId.get(id);
    if (!r || r.revoked_at !== null) return undefined;
    return toKeyOwner(r);
  }

  list(): ApiKeyRow[] {
    return [...this.byId.values()]
      .filter((r) => r.revoked_at === null)
      .sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map(toApiKeyRow);
  }

  async revoke(id: string, at: number): Promise<boolean> {
    return (await this.write('UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [at, id])).length > 0;
  }

  async touch(id: string, at: number): Promise<void> {
    const r = this.byId.get(id);
    if (r) r.last_used_at = at;
    await this.pool.query('UPDATE api_keys SET last_used_at = $1 WHERE id = $2', [at, id]);
  }

  hasActiveAdmin(): boolean {
    for (const r of this.byId.values()) if (r.role === 'admin' && r.revoked_at === null) return true;
    return false;
  }
}
