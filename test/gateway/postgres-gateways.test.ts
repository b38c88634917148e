/**
 * Issue 14: two gateways (each `npm run start:gateway` as composed, its own DATA_DIR) on one
 * PostgreSQL database (DATABASE_URL): what one registers the other serves, an API key made through
 * one works on the other and stops working there once revoked through the first (the change notice,
 * plus the other's key cache), and both answer the same; a void posted through one is applied by the
 * other. Real HTTP; waits are bounded polls.
 */
import t from 'tap';
import { loadConfig } from '../../domain/config.ts';
import { silentLogger } from '../../domain/logger.ts';
import { startGatewayService } from '../../gateway/main.ts';
import { openPostgresReadingStore } from '../../store/postgres/readings.ts';
import { eventually } from '../helpers/eventually.ts';
import { postgresForFile } from '../helpers/postgres.ts';
import { reading } from '../helpers/reading-store-contract.ts';

const ADMIN = 'admin-key-for-the-postgres-gateways';
const OWNER = '0x' + '22'.repeat(20);

t.test('two gateways on one database answer the same', async (t) => {
  const cluster = await postgresForFile(t);
  if (!cluster) return;
  const url = await cluster.createDatabase();
  const gateway = async () => {
    const g = await startGatewayService(loadConfig({ DATABASE_URL: url, ADMIN_API_KEY: ADMIN, DATA_DIR: t.testdir() + `-${Math.random().toString(36).slice(2)}` }, { httpPort: 0 }), {
      logger: silentLogger,
    });
    t.teardown(() => g.close());
    return g;
  };
  const one = await gateway();
  const two = await gateway();
  const call = (base: string, path: string, key = ADMIN, init: RequestInit = {}) =>
    fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${key}`, ...(init.body ? { 'content-type': 'application/json' } : {}) } });

  const created = await call(one.url, '/v1/facilities', ADMIN, { method: 'POST', body: JSON.stringify({ id: 'F', name: 'Plant', owner: OWNER, baselineKgPerHour: '3600' }) });
  t.equal(created.status, 201, 'registered through the first');
  const dev = await call(one.url, '/v1/facilities/F/devices', ADMIN, { method: 'POST', body: JSON.stringify({ deviceId: 'm1' }) });
  t.equal(dev.status, 201);
  await eventually('the second serves the facility', async () => (await call(two.url, '/v1/facilities/F/devices')).status === 200);
  const list = async (base: string) => (await (await call(base, '/v1/facilities/F/devices')).json()) as { items: { deviceId: string; status: string }[] };
  t.same(await list(two.url), await list(one.url), 'both list the same devices');

  const suspended = await call(two.url, '/v1/devices/m1', ADMIN, { method: 'PATCH', body: JSON.stringify({ status: 'suspended' }) });
  t.equal(suspended.status, 200, 'suspended through the second');
  await eventually('the first sees the suspension', async () => (await list(one.url)).items[0]?.status === 'suspended');

  const made = await call(one.url, '/v1/api-keys', ADMIN, { method: 'POST', body: JSON.stringify({ role: 'regulator' }) });
  t.equal(made.status, 201);
  const { key, id } = (await made.json()) as { key: string; id: string };
  await eventually('the key works on the second', async () => (await call(two.url, '/v1/facilities', key)).status === 200);
  const revoked = await call(one.url, `/v1/api-keys/${id}`, ADMIN, { method: 'DELETE' });
  t.equal(revoked.status, 204, 'revoked through the first');
  await eventually('the second refuses it', async () => (await call(two.url, '/v1/facilities', key)).status === 401);
  t.equal((await call(one.url, '/v1/facilities', key)).status, 401, 'and so does the first');
});

t.test('a void posted through one gateway is applied by the other (voids in PostgreSQL)', async (t) => {
  const cluster = await postgresForFile(t);
  if (!cluster) return;
  const url = await cluster.createDatabase();
  const gateway = async () => {
    const config = loadConfig({ DATABASE_URL: url, READINGS_STORE: 'postgres', ADMIN_API_KEY: ADMIN, DATA_DIR: t.testdir() + `-${Math.random().toString(36).slice(2)}` }, { httpPort: 0 });
    const g = await startGatewayService(config, { logger: silentLogger });
    t.teardown(() => g.close());
    return g;
  };
  const one = await gateway();
  const two = await gateway();
  const call = (base: string, path: string, key = ADMIN, init: RequestInit = {}) =>
    fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${key}`, ...(init.body ? { 'content-type': 'application/json' } : {}) } });
  t.equal((await call(one.url, '/v1/facilities', ADMIN, { method: 'POST', body: JSON.stringify({ id: 'F', name: 'Plant', owner: OWNER, baselineKgPerHour: '3600' }) })).status, 201);
  t.equal((await call(one.url, '/v1/facilities/F/devices', ADMIN, { method: 'POST', body: JSON.stringify({ deviceId: 'm1' }) })).status, 201);
  // The readings as an ingest process on the same database stores them.
  const store = await openPostgresReadingStore(url);
  t.teardown(() => store.close());
  const t0 = Date.parse('2026-11-22T00:00:00Z');
  const out = await store.commit([reading('m1', 1, t0, '100', { facilityId: 'F' }), reading('m1', 2, t0 + 60_000, '101', { facilityId: 'F' })]);
  t.same(out.map((o) => o.status), ['stored', 'stored']);
  const made = (await (await call(one.url, '/v1/api-keys', ADMIN, { method: 'POST', body: JSON.stringify({ role: 'regulator' }) })).json()) as { key: string };
  await eventually('the regulator key works on the first', async () => (await call(one.url, '/v1/facilities', made.key)).status === 200);
  const voided = await call(one.url, '/v1/devices/m1/voids', made.key, {
    method: 'POST',
    body: JSON.stringify({ from: new Date(t0 + 30_000).toISOString(), to: new Date(t0 + 120_000).toISOString(), reason: 'meter fault' }),
  });
  t.equal(voided.status, 201, 'voided through the first');
  const flags = async (base: string) =>
    ((await (await call(base, '/v1/facilities/F/readings')).json()) as { items: { seq: number; voided?: boolean }[] }).items.map((r) => [r.seq, r.voided ?? false]);
  t.same(await flags(two.url), [[2, true], [1, false]], 'the second flags the voided reading (it reads the same voids)');
  t.same(await flags(one.url), await flags(two.url));
});
