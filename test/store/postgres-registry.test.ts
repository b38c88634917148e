/**
 * The registry, API keys, records and status on a real PostgreSQL (a throwaway cluster for the file,
 * a fresh database per test): the shared contract (test/helpers/registry-contract.ts), then what only
 * several processes on one database show. Each "process" here is its own openPostgresStores (its own
 * pool, LISTEN connection and replica), as a gateway and a broker on two machines would be; the OS
 * process test is test/broker/registry-notify.test.ts. Waits are bounded polls of the condition.
 */
import pg from 'pg';
import t, { type Test } from 'tap';
import { openPostgresStores, type PostgresStores } from '../../store/postgres/stores.ts';
import type { RegistryChange } from '../../store/types.ts';
import { eventually } from '../helpers/eventually.ts';
import { postgresForFile, postgresMissing, type PostgresCluster } from '../helpers/postgres.ts';
import { registryContract, T0 } from '../helpers/registry-contract.ts';
import { skipUnless } from '../helpers/require.ts';

const OWNER = '0x' + 'ab'.repeat(20);
const facility = (id: string) => ({ id, name: id, owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });

const skip = skipUnless(postgresMissing());
// One cluster for the file (stopped in the file's teardown), a fresh database per test.
const cluster: PostgresCluster | undefined = skip ? undefined : await postgresForFile(t);
const database = () => cluster!.createDatabase();

async function open(t: Test, url: string, clock?: () => number): Promise<PostgresStores> {
  const s = await openPostgresStores(url, { ...(clock ? { clock } : {}), reconnectMs: 100 });
  t.teardown(() => s.close());
  return s;
}

t.test('contract', { skip }, async (t) => {
  registryContract(t, async (t) => {
    let now = T0;
    const s = await open(t, await cluster!.createDatabase(), () => now);
    return { ...s, setClock: (ms: number) => (now = ms) };
  });
});

t.test('several processes on one database', { skip }, async (t) => {
  t.test("a write through one is in the other's replica once its notice arrived", async (t) => {
    const url = await database();
    const a = await open(t, url);
    const b = await open(t, url);
    const changes: RegistryChange[] = [];
    b.registry.onChange((c) => changes.push(c));

    await a.registry.createFacility(facility('F'));
    const { password } = await a.registry.createDevice('F', 'd1', 'meter', { capacity: '5' });
    await eventually('the device in the other replica', () => b.registry.getDevice('d1') !== undefined);
    t.match(b.registry.getFacility('F'), { id: 'F', status: 'active' });
    t.same(b.registry.deviceLimits('d1'), { reportingIntervalSeconds: 60, kind: 'meter', capacity: '5' });
    t.ok(changes.some((c) => c.kind === 'device' && c.id === 'd1'), 'its listeners were told which device');

    const before = b.registry.credentials('d1')!.secretHash;
    await a.registry.rotateSecret('d1');
    await eventually('the rotation', () => b.registry.credentials('d1')!.secretHash !== before);
    t.not(password, '', 'rotated');

    await a.registry.updateDevice('d1', { status: 'suspended' });
    await eventually('the suspension', () => b.registry.credentials('d1')?.status === 'suspended');
    await a.registry.updateFacility('F', { status: 'suspended', baselineKgPerHour: '100', effectiveFrom: T0 });
    await eventually('the facility', () => b.registry.credentials('d1')?.facilityStatus === 'suspended');
    t.equal(b.registry.baselineAt('F', T0), '100', 'with its baseline history');

    await a.registry.setOnline('d1', true, T0 + 5);
    await eventually('the online status', () => b.registry.getDevice('d1')?.online === true);
    t.equal(b.registry.getDevice('d1')?.lastSeenAt, T0 + 5);

    await a.apiKeys.insert({ id: 'k1', keyHash: 'h1', role: 'admin', prefix: 'p', createdAt: T0 });
    await eventually('the key', () => b.apiKeys.byHash('h1') !== undefined);
    await a.apiKeys.revoke('k1', T0 + 1);
    await eventually('the revocation', () => b.apiKeys.byHash('h1') === undefined);

    await a.registry.deleteFacility('F');
    await eventually('the deletion', () => b.registry.getFacility('F') === undefined && b.registry.getDevice('d1') === undefined);
  });

  t.test('races are decided by the database: one device id, one winner', async (t) => {
    const url = await database();
    const a = await open(t, url);
    const b = await open(t, url);
    await a.registry.createFacility(facility('F'));
    await eventually('the facility in b', () => b.registry.getFacility('F') !== undefined);
    const outcomes = await Promise.allSettled([a.registry.createDevice('F', 'same', 'meter'), b.registry.createDevice('F', 'same', 'meter')]);
    t.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1, 'one created it');
    const lost = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    t.match(lost.reason, { code: 'DEVICE_EXISTS' }, 'the other gets DEVICE_EXISTS');
    const facilities = await Promise.allSettled([a.registry.createFacility(facility('G')), b.registry.createFacility(facility('G'))]);
    t.equal(facilities.filter((o) => o.status === 'rejected' && (o.reason as { code?: string }).code === 'FACILITY_EXISTS').length, 1);
  });

  t.test("voids and corrections: one process's void is the other's; one of two racing corrections wins", async (t) => {
    const url = await database();
    const a = await open(t, url);
    const b = await open(t, url);
    const v = await a.corrections.addVoid({ facilityId: 'F', deviceId: 'd1', from: T0, to: T0 + 1000, reason: 'meter fault', by: 'k', at: T0 });
    t.same(await b.corrections.voidsOf(['d1']), [v], 'the void posted through one is read by the other at once');
    t.same(await b.corrections.voidedFacilities(), [{ facilityId: 'F', voids: 1 }]);
    const inputs = { methodologyVersion: 't', baselineKgPerHour: '1', factors: {}, devices: [], lateKeys: [], totals: {}, baselineKg: '1', rawNetGrams: '0' } as never;
    for (let round = 1; round <= 5; round++) {
      const settlementId = `F-${round}`;
      const c = (net: string) => ({
        id: `${settlementId}-c1`, settlementId, seq: 1, facilityId: 'F', windowStart: round, windowEnd: round + 1, voidIds: [v.id], reason: 'r',
        complete: true, prevNetGrams: '10', netGrams: net, deltaGrams: String(BigInt(net) - 10n), actualKg: '1', evidenceRoot: '0x' + net, inputs,
      });
      const outcomes = await Promise.allSettled([a.corrections.insertCorrections([c('7')], []), b.corrections.insertCorrections([c('8')], [])]);
      t.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1, `round ${round}: one recorded correction 1`);
      const lost = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      t.match(lost.reason, { code: 'CORRECTION_RACED', statusCode: 409 }, `round ${round}: the other is told it raced`);
      t.equal((await a.corrections.correctionsOf([settlementId])).length, 1, `round ${round}: one row`);
    }
  });

  t.test('a lost LISTEN connection: reopened, and the replica reloaded with what it missed', async (t) => {
    const url = await database();
    const a = await open(t, url);
    const b = await open(t, url);
    await a.registry.createFacility(facility('F'));
    await a.registry.createDevice('F', 'd1', 'meter');
    await eventually('b loaded', () => b.registry.getDevice('d1') !== undefined);
    // Cut every LISTEN session; a change is committed while they are down.
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    t.teardown(() => admin.end());
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mrv-listen' AND pid <> pg_backend_pid()");
    await eventually('b noticed', () => !b.listener.connected());
    await a.registry.updateDevice('d1', { status: 'suspended' });
    await eventually('b reconnected and reloaded', () => b.listener.connected() && b.registry.credentials('d1')?.status === 'suspended');
    t.pass('the change made while b was deaf reached it');
  });
});
