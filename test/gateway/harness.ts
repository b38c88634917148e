/**
 * Builds a gateway on a temporary SQLite file (real registry and reading store) with keys for every
 * role, a stand-in chain and broker, for the gateway tests.
 */
import type { Test } from 'tap';
import { Registry as PromRegistry } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import { openDatabase, type Db } from '../../store/sqlite/db.ts';
import type { FacilityRegistry, ReadingStore } from '../../store/types.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { silentLogger } from '../../domain/logger.ts';
import { buildGateway } from '../../gateway/app.ts';
import { createKeyStore } from '../../gateway/keys.ts';
import type { GatewayDeps, GatewayOptions } from '../../gateway/deps.ts';
import { fakeBroker } from './fakes.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { facilityFixture } from '../helpers/fixtures.ts';


export const OWNER_A = '0x' + 'a1'.repeat(20);
export const OWNER_B = '0x' + 'b2'.repeat(20);

export interface Harness {
  app: FastifyInstance;
  db: Db;
  dir: string;
  registry: FacilityRegistry;
  /** The gateway's reading store (SQLite). */
  readings: ReadingStore;
  ledger: MemoryLedger;
  broker: ReturnType<typeof fakeBroker>;
  metrics: PromRegistry;
  key: { admin: string; regulator: string; facA: string; facB: string };
  auth(role: keyof Harness['key']): { authorization: string };
}

export async function startGateway(
  t: Test,
  opts: { options?: GatewayOptions; deps?: Partial<GatewayDeps>; facilities?: boolean } = {},
): Promise<Harness> {
  const dir = tmpDir(t, 'mrv-gw-');
  const db = openDatabase(dir);
  t.teardown(() => db.close());
  const stores = openSqliteStores(db);
  // The holders here have no keys: a signature ending in 00 stands for a forged one.
  const ledger = new MemoryLedger({ checkSignature: (req) => !req.signature.endsWith('00') });
  const broker = fakeBroker();
  const metrics = new PromRegistry();
  const app = await buildGateway({
    db,
    registry: stores.registry,
    readings: stores.readings,
    ledger,
    broker,
    metrics,
    logger: silentLogger,
    options: { rateLimitMax: 1000, chainCacheMs: 0, windowSeconds: 10, ...opts.options },
    ...opts.deps,
  });
  t.teardown(() => app.close());
  await app.ready();

  if (opts.facilities !== false) {
    const now = Date.now();
    stores.registry.createFacility(facilityFixture('facA', { name: 'Plant A', owner: OWNER_A, createdAt: now }));
    stores.registry.createFacility(facilityFixture('facB', { name: 'Plant B', owner: OWNER_B, baselineKgPerHour: '1200', createdAt: now }));
    await ledger.registerFacility('facA', OWNER_A, '3600', 0);
    await ledger.registerFacility('facB', OWNER_B, '1200', 0);
    ledger.calls.length = 0;
    ledger.writes.length = 0;
  }
  const keys = createKeyStore(db);
  const key = {
    admin: keys.create('admin').key,
    regulator: keys.create('regulator').key,
    facA: opts.facilities === false ? '' : keys.create('facility', 'facA').key,
    facB: opts.facilities === false ? '' : keys.create('facility', 'facB').key,
  };
  return {
    app,
    db,
    dir,
    registry: stores.registry,
    readings: stores.readings,
    ledger,
    broker,
    metrics,
    key,
    auth: (role) => ({ authorization: `Bearer ${key[role]}` }),
  };
}
