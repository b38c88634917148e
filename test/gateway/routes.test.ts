/**
 * Every route through inject(): success, validation failure, 401, 403 (facility A reading facility
 * B, a regulator attempting an admin-only write), 404, and the error format. Chain, oracle, broker
 * and reading store are stand-ins here (their real versions are exercised in tamper/browser tests).
 */
import t, { type Test } from 'tap';
import { ethers } from 'ethers';
import { readingKeyText, type Reading } from '../../domain/reading.ts';
import type { ReadingStore } from '../../store/types.ts';
import type { GatewaySettlements, SettlementRecord } from '../../gateway/deps.ts';
import type { SettlementAudit } from '../../oracle/audit.ts';
import { OWNER_A, startGateway, type Harness } from './harness.ts';

const T0 = Date.UTC(2026, 10, 22, 6, 0, 0);

function readingStore(rows: Reading[]): ReadingStore & { lastFilter?: unknown } {
  const self: ReadingStore & { lastFilter?: unknown } = {
    kind: 'sqlite',
    async commit() {
      return [];
    },
    async marks() {
      return new Map();
    },
    async coverage() {
      return { after: false, between: 0, interval: false };
    },
    async consume() {
      return [];
    },
    async hasReading() {
      return false;
    },
    async list(f) {
      self.lastFilter = f;
      return rows
        .filter((r) => r.facilityId === f.facilityId && (!f.deviceId || r.deviceId === f.deviceId) && (!f.metric || r.metric === f.metric))
        .filter((r) => (f.from === undefined || r.ts >= f.from) && (f.to === undefined || r.ts < f.to))
        .sort((a, b) => b.ts - a.ts)
        .slice(0, f.limit);
    },
    async get() {
      return undefined;
    },
    async ping() {
      return true;
    },
    async close() {},
  };
  return self;
}

const READINGS: Reading[] = [
  { facilityId: 'facA', deviceId: 'meterA', seq: 1, ts: T0, metric: 'electricity_import', value: '1000', unit: 'kWh', reset: false, receivedAt: T0 },
  { facilityId: 'facA', deviceId: 'meterA', seq: 2, ts: T0 + 10_000, metric: 'electricity_import', value: '1005.25', unit: 'kWh', reset: false, receivedAt: T0 },
  { facilityId: 'facA', deviceId: 'cems', seq: 7, ts: T0 + 5_000, metric: 'co2_direct', value: '1.5', unit: 'kg', reset: true, receivedAt: T0 },
  { facilityId: 'facB', deviceId: 'meterB', seq: 1, ts: T0, metric: 'electricity_import', value: '50', unit: 'kWh', reset: false, receivedAt: T0 },
];

const SETTLEMENTS: SettlementRecord[] = [
  { id: 'facA:1', facilityId: 'facA', windowStart: T0, windowEnd: T0 + 10_000, complete: true, netGrams: 7317n, mintedGrams: 7317n, burnedGrams: 0n, deficitGrams: 0n, evidenceRoot: '0x' + '11'.repeat(32), txHash: '0x' + '22'.repeat(32) },
  { id: 'facB:1', facilityId: 'facB', windowStart: T0, windowEnd: T0 + 10_000, complete: false, netGrams: -20n, mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 20n, evidenceRoot: '0x' + '33'.repeat(32), txHash: null },
];

const settlements: GatewaySettlements = {
  listSettlements: (q) =>
    SETTLEMENTS.filter((s) => (!q.facilityId || s.facilityId === q.facilityId) && (q.from === undefined || s.windowStart >= q.from) && (q.to === undefined || s.windowStart < q.to)),
  getSettlement: (id) => SETTLEMENTS.find((s) => s.id === id),
  lateReadings: (_f, keys) => new Set(keys.filter((k) => k.deviceId === 'cems').map(readingKeyText)),
};

const RECOMPUTED = { evidenceRoot: '0x' + '11'.repeat(32), netGrams: '7317', actualKg: '1.2', baselineKg: '8.5', complete: true, factorsHash: '0x' + '55'.repeat(32), readings: 2 };
const LEAF = ['reading', 'meterA', '2', '0', 'electricity_import', '10', false, false] as const;
const audit: SettlementAudit = {
  async verify() {
    return { match: true, onChain: { found: true, evidenceRoot: '0x' + '11'.repeat(32), netGrams: '7317', txHash: null }, recomputed: RECOMPUTED, recorded: { evidenceRoot: '0x' + '11'.repeat(32), netGrams: '7317' } };
  },
  async proof(_id, deviceId, seq) {
    if (deviceId !== 'meterA' || seq !== 2) return undefined;
    return { root: '0x' + '11'.repeat(32), leaf: [...LEAF], leafEncoding: ['string', 'string', 'int256', 'int256', 'string', 'string', 'bool', 'bool'], proof: ['0x' + '44'.repeat(32)] };
  },
  async bundle() {
    throw new Error('no bundles in this test (test/gateway/bundle.test.ts)');
  },
};

type Role = keyof Harness['key'] | 'none' | 'bogus';

async function setup(tt: Test, options = {}) {
  const h = await startGateway(tt, { deps: { readings: readingStore(READINGS), settlements, audit }, options });
  const call = async (method: string, url: string, role: Role, payload?: unknown) => {
    const headers: Record<string, string> = role === 'none' ? {} : role === 'bogus' ? { authorization: 'Bearer mrv_nope' } : h.auth(role);
    const res = await h.app.inject({ method: method as 'GET', url, headers, ...(payload !== undefined ? { payload: payload as object } : {}) });
    return { status: res.statusCode, body: res.body ? (res.headers['content-type']?.toString().includes('json') ? res.json() : res.body) : undefined, headers: res.headers };
  };
  return { h, call };
}

/** Asserts the SPEC error shape and returns the code. */
function errorCode(tt: Test, body: unknown): string {
  const e = (body as { error?: { code?: unknown; message?: unknown } }).error;
  tt.type(e?.code, 'string', 'error.code');
  tt.type(e?.message, 'string', 'error.message');
  tt.same(Object.keys(body as object), ['error'], 'only the error object');
  return e!.code as string;
}

t.test('authentication and the role matrix', async (t) => {
  const { call } = await setup(t);
  // [method, url, body, roles that succeed]; lists answer every facility key, scoped to its facility.
  const matrix: [string, string, unknown, Role[]][] = [
    ['GET', '/v1/api-keys', undefined, ['admin']],
    ['GET', '/v1/facilities', undefined, ['admin', 'regulator', 'facA', 'facB']],
    ['GET', '/v1/facilities/facA', undefined, ['admin', 'regulator', 'facA']],
    ['GET', '/v1/facilities/facA/devices', undefined, ['admin', 'regulator', 'facA']],
    ['GET', '/v1/facilities/facA/readings', undefined, ['admin', 'regulator', 'facA']],
    ['GET', '/v1/facilities/facA/rejections', undefined, ['admin', 'regulator', 'facA']],
    ['GET', '/v1/facilities/facA/balance', undefined, ['admin', 'regulator', 'facA']],
    ['GET', '/v1/settlements', undefined, ['admin', 'regulator', 'facA', 'facB']],
    ['GET', '/v1/settlements?facilityId=facA', undefined, ['admin', 'regulator', 'facA']],
    ['GET', '/v1/settlements/facA:1', undefined, ['admin', 'regulator', 'facA']],
    ['GET', '/v1/settlements/facA:1/verify', undefined, ['admin', 'regulator', 'facA']],
    ['GET', '/v1/settlements/facA:1/proof?deviceId=meterA&seq=2', undefined, ['admin', 'regulator', 'facA']],
    ['GET', '/v1/retirements', undefined, ['admin', 'regulator', 'facA', 'facB']],
    ['GET', '/v1/retirements?facilityId=facA', undefined, ['admin', 'regulator', 'facA']],
    ['GET', '/metrics', undefined, ['admin', 'regulator']],
  ];
  for (const [method, url, body, ok] of matrix) {
    for (const role of ['admin', 'regulator', 'facA', 'facB', 'none', 'bogus'] as Role[]) {
      const r = await call(method, url, role, body);
      if (role === 'none' || role === 'bogus') {
        t.equal(r.status, 401, `${method} ${url} as ${role} → 401`);
        t.equal(errorCode(t, r.body), 'UNAUTHENTICATED');
      } else if (ok.includes(role)) {
        t.equal(r.status, 200, `${method} ${url} as ${role} → 200`);
      } else {
        t.equal(r.status, 403, `${method} ${url} as ${role} → 403`);
        t.equal(errorCode(t, r.body), 'FORBIDDEN');
      }
    }
  }
  const malformed = await call('GET', '/v1/facilities', 'none');
  t.equal(malformed.status, 401);
});

t.test('API keys: created once, listed without secrets, revoked at once; admin only', async (t) => {
  const { h, call } = await setup(t);
  const created = await call('POST', '/v1/api-keys', 'admin', { role: 'facility', facilityId: 'facB' });
  t.equal(created.status, 201);
  t.match(created.body, { role: 'facility', facilityId: 'facB', key: /^mrv_[A-Za-z0-9_-]{43}$/, id: /^key_/ });
  const newKey = (created.body as { key: string }).key;
  const asNew = await h.app.inject({ url: '/v1/facilities', headers: { authorization: `Bearer ${newKey}` } });
  t.same(asNew.json().items.map((f: { id: string }) => f.id), ['facB'], 'the new facility key sees its facility only');

  const list = await call('GET', '/v1/api-keys', 'admin');
  t.equal(list.status, 200);
  const items = (list.body as { items: Record<string, unknown>[] }).items;
  t.ok(items.some((k) => k.id === (created.body as { id: string }).id));
  t.notOk(JSON.stringify(list.body).includes(newKey), 'no secret in the listing');
  t.notOk(items.some((k) => 'key' in k || 'keyHash' in k), 'no key or hash field');
  const stored = h.db.prepare('SELECT key_hash FROM api_keys WHERE id = ?').get((created.body as { id: string }).id) as { key_hash: string };
  t.not(stored.key_hash, newKey, 'stored hashed');
  t.match(stored.key_hash, /^[0-9a-f]{64}$/);

  t.equal((await call('POST', '/v1/api-keys', 'regulator', { role: 'admin' })).status, 403, 'regulator cannot mint keys');
  t.equal((await call('POST', '/v1/api-keys', 'facA', { role: 'admin' })).status, 403);
  t.equal((await call('POST', '/v1/api-keys', 'none', { role: 'admin' })).status, 401);
  for (const bad of [{ role: 'root' }, { role: 'facility' }, { role: 'admin', facilityId: 'facA' }, { role: 'regulator', extra: 1 }, {}]) {
    const r = await call('POST', '/v1/api-keys', 'admin', bad);
    t.equal(r.status, 400, `400 for ${JSON.stringify(bad)}`);
    t.equal(errorCode(t, r.body), 'VALIDATION_FAILED');
  }
  const unknownFacility = await call('POST', '/v1/api-keys', 'admin', { role: 'facility', facilityId: 'nope' });
  t.equal(unknownFacility.status, 404);
  t.equal(errorCode(t, unknownFacility.body), 'FACILITY_NOT_FOUND');

  t.equal((await call('DELETE', `/v1/api-keys/${(created.body as { id: string }).id}`, 'regulator')).status, 403);
  t.equal((await call('DELETE', `/v1/api-keys/${(created.body as { id: string }).id}`, 'admin')).status, 204);
  const revoked = await h.app.inject({ url: '/v1/facilities', headers: { authorization: `Bearer ${newKey}` } });
  t.equal(revoked.statusCode, 401, 'a revoked key stops working at once (cache cleared)');
  const again = await call('DELETE', `/v1/api-keys/${(created.body as { id: string }).id}`, 'admin');
  t.equal(again.status, 404);
  t.equal((await call('DELETE', '/v1/api-keys/bad%20id', 'admin')).status, 400);
});

t.test('facilities: register (on-chain too), list by scope, read, patch', async (t) => {
  const { h, call } = await setup(t);
  const body = { id: 'facC', name: 'Plant C', owner: '0x' + 'c3'.repeat(20), baselineKgPerHour: 2500.5, gasFactorKgPerM3: '2.2' };
  const r = await call('POST', '/v1/facilities', 'regulator', body);
  t.equal(r.status, 201);
  t.match(r.body, { id: 'facC', baselineKgPerHour: '2500.5', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.2', status: 'active', chain: { synced: true } });
  t.match(h.ledger.writes[0], /^register facC 0x(c3){20} 2500\.5 \d+$/i, 'registered on-chain with the first window start (owner in its EIP-55 form)');
  const first = Number(h.ledger.writes[0].split(' ')[4]);
  t.equal(first % 10_000, 0, 'first window aligned to W');
  t.equal((await call('POST', '/v1/facilities', 'regulator', body)).status, 409, 'duplicate id');
  t.equal((await call('POST', '/v1/facilities', 'facA', { ...body, id: 'facD' })).status, 403, 'facility key cannot register');
  for (const bad of [
    { ...body, id: 'bad id' },
    { ...body, id: 'facE', owner: '0x123' },
    { ...body, id: 'facE', baselineKgPerHour: '-1' },
    { ...body, id: 'facE', baselineKgPerHour: '12,5' },
    { ...body, id: 'facE', extra: true },
    { id: 'facE', name: 'x', owner: body.owner },
  ]) {
    const res = await call('POST', '/v1/facilities', 'admin', bad);
    t.equal(res.status, 400, `400 for ${JSON.stringify(bad).slice(0, 60)}`);
    errorCode(t, res.body);
  }
  const notJson = await h.app.inject({ method: 'POST', url: '/v1/facilities', headers: { ...h.auth('admin'), 'content-type': 'application/json' }, payload: '{"id":' });
  t.equal(notJson.statusCode, 400);
  errorCode(t, notJson.json());

  const all = await call('GET', '/v1/facilities', 'regulator');
  t.same((all.body as { items: { id: string }[] }).items.map((f) => f.id).sort(), ['facA', 'facB', 'facC']);
  const mine = await call('GET', '/v1/facilities', 'facA');
  t.same((mine.body as { items: { id: string }[] }).items.map((f) => f.id), ['facA'], 'a facility key lists only its own facility');
  t.match((await call('GET', '/v1/facilities/facA', 'facA')).body, { id: 'facA', owner: OWNER_A, createdAt: /Z$/ });
  t.equal((await call('GET', '/v1/facilities/facB', 'facA')).status, 403, 'facility A cannot read facility B');
  const missing = await call('GET', '/v1/facilities/zzz', 'admin');
  t.equal(missing.status, 404);
  t.equal(errorCode(t, missing.body), 'FACILITY_NOT_FOUND');
  t.equal((await call('GET', '/v1/facilities/' + 'x'.repeat(65), 'admin')).status, 400);

  const susp = await call('PATCH', '/v1/facilities/facA', 'regulator', { status: 'suspended' });
  t.equal(susp.status, 200);
  t.match(susp.body, { status: 'suspended', chain: { synced: true } });
  t.ok(h.broker.disconnected.includes('facility:facA'), 'suspension disconnects the facility devices');
  t.ok(h.ledger.writes.includes('suspend facA true'), 'suspension pushed on-chain');
  const react = await call('PATCH', '/v1/facilities/facA', 'regulator', { status: 'active' });
  t.match(react.body, { status: 'active' });
  t.ok(h.ledger.writes.includes('suspend facA false'));
  const base = await call('PATCH', '/v1/facilities/facA', 'admin', { baselineKgPerHour: '4000' });
  t.match(base.body, { baselineKgPerHour: '4000' });
  t.equal(h.registry.baselineAt('facA', Date.now() - 1), '3600', 'the new baseline does not apply to the current window');
  t.equal(h.registry.baselineAt('facA', Date.now() + 20_000), '4000', 'it applies from the next window');
  t.equal((await call('PATCH', '/v1/facilities/facA', 'facA', { status: 'active' })).status, 403);
  t.equal((await call('PATCH', '/v1/facilities/facA', 'admin', {})).status, 400, 'empty patch');
  t.equal((await call('PATCH', '/v1/facilities/facA', 'admin', { status: 'closed' })).status, 400);
  t.equal((await call('PATCH', '/v1/facilities/nope', 'admin', { status: 'active' })).status, 404);

  // The chain failing does not lose the registration: it is reported, the oracle reconciles.
  h.ledger.registerFacility = async () => {
    throw new Error('connection refused');
  };
  const offline = await call('POST', '/v1/facilities', 'admin', { ...body, id: 'facF', owner: '0x' + 'f6'.repeat(20) });
  t.equal(offline.status, 201);
  t.match(offline.body, { id: 'facF', chain: { synced: false, message: /connection refused/ } });
});

t.test('devices: credentials once, list, rotate and suspend disconnect at once', async (t) => {
  const { h, call } = await setup(t);
  const r = await call('POST', '/v1/facilities/facA/devices', 'regulator', { deviceId: 'meter-1', kind: 'electricity' });
  t.equal(r.status, 201);
  t.match(r.body, { deviceId: 'meter-1', facilityId: 'facA', username: 'meter-1', password: /.{16,}/ });
  const password = (r.body as { password: string }).password;
  t.equal((await call('POST', '/v1/facilities/facA/devices', 'admin', { deviceId: 'meter-1' })).status, 409);
  t.equal((await call('POST', '/v1/facilities/nope/devices', 'admin', { deviceId: 'meter-2' })).status, 404);
  t.equal((await call('POST', '/v1/facilities/facA/devices', 'facA', { deviceId: 'meter-3' })).status, 403, 'facilities do not register their own meters');
  t.equal((await call('POST', '/v1/facilities/facA/devices', 'admin', { deviceId: 'bad/id' })).status, 400);
  t.equal((await call('POST', '/v1/facilities/facA/devices', 'admin', { deviceId: 'm', secret: 'x' })).status, 400);

  const list = await call('GET', '/v1/facilities/facA/devices', 'facA');
  t.equal(list.status, 200);
  t.match((list.body as { items: unknown[] }).items, [{ deviceId: 'meter-1', facilityId: 'facA', kind: 'electricity', status: 'active', online: false }]);
  t.notOk(JSON.stringify(list.body).includes(password), 'no secret in the listing');
  t.equal((await call('GET', '/v1/facilities/facA/devices', 'facB')).status, 403);
  t.equal((await call('GET', '/v1/facilities/nope/devices', 'admin')).status, 404);

  // Issue 10 item 14: a facility key can neither rotate its meter's secret (it could then publish as the
  // meter) nor change its status or capacity; nothing changes and nobody is disconnected.
  const denied = await call('PATCH', '/v1/devices/meter-1', 'facA', { rotateSecret: true });
  t.equal(denied.status, 403, 'a facility key may not rotate its own device secret');
  t.notOk('password' in (denied.body as object), 'and gets no password');
  t.equal((await call('PATCH', '/v1/devices/meter-1', 'facA', { capacity: '1000000000' })).status, 403, 'nor widen what its meter may report');
  t.same(h.broker.disconnected, [], 'nothing disconnected');
  if (h.registry.credentials('meter-1')) {
    const { verifyDeviceSecret } = await import('../../store/secrets.ts');
    t.ok(await verifyDeviceSecret(h.registry, 'meter-1', password), 'the secret is unchanged');
  }
  const rot = await call('PATCH', '/v1/devices/meter-1', 'regulator', { rotateSecret: true });
  t.equal(rot.status, 200, 'a regulator rotates a device secret');
  const newPassword = (rot.body as { password: string }).password;
  t.ok(newPassword && newPassword !== password, 'a new password is returned once');
  t.same(h.broker.disconnected, ['device:meter-1'], 'rotation disconnects the device at once');
  if (h.registry.credentials('meter-1')) {
    // Real registry: the stored hash now accepts the new secret only.
    const { verifyDeviceSecret } = await import('../../store/secrets.ts');
    t.notOk(await verifyDeviceSecret(h.registry, 'meter-1', password), 'the old secret no longer authenticates');
    t.ok(await verifyDeviceSecret(h.registry, 'meter-1', newPassword), 'the new one does');
    t.match(h.registry.credentials('meter-1')!.secretHash, /^hs256\$/, 'stored as a fast keyed hash (no scrypt on the event loop)');
  }
  t.equal((await call('PATCH', '/v1/devices/meter-1', 'facA', { status: 'suspended' })).status, 403, 'a facility cannot switch its meters off');
  t.equal((await call('PATCH', '/v1/devices/meter-1', 'facB', { rotateSecret: true })).status, 403, 'facility B cannot touch facility A devices');
  const susp = await call('PATCH', '/v1/devices/meter-1', 'regulator', { status: 'suspended' });
  t.match(susp.body, { deviceId: 'meter-1', status: 'suspended' });
  t.notOk('password' in (susp.body as object));
  t.equal(h.broker.disconnected.length, 2, 'suspension disconnects too');
  t.equal((await call('PATCH', '/v1/devices/meter-1', 'regulator', { status: 'active' })).status, 200);
  t.equal(h.broker.disconnected.length, 2, 'reactivation does not disconnect');
  t.equal((await call('PATCH', '/v1/devices/nope', 'admin', { status: 'active' })).status, 404);
  t.equal((await call('PATCH', '/v1/devices/meter-1', 'admin', { rotateSecret: false })).status, 400);
  t.equal((await call('PATCH', '/v1/devices/meter-1', 'admin', {})).status, 400);
  t.equal((await call('PATCH', '/v1/devices/meter-1', 'none', { rotateSecret: true })).status, 401);
});

t.test('devices: capacity, reporting interval and decommissioning over the API', async (t) => {
  const { h, call } = await setup(t);
  const created = await call('POST', '/v1/facilities/facA/devices', 'regulator', { deviceId: 'cap-1', kind: 'grid', capacity: '250.5', reportingIntervalSeconds: 15 });
  t.equal(created.status, 201);
  const listed = await call('GET', '/v1/facilities/facA/devices', 'facA');
  t.match((listed.body as { items: unknown[] }).items, [{ deviceId: 'cap-1', capacity: '250.5', reportingIntervalSeconds: 15, status: 'active' }]);
  for (const [body, why] of [
    [{ deviceId: 'cap-2', capacity: '-5' }, /capacity/],
    [{ deviceId: 'cap-2', capacity: 0 }, /capacity must be above 0/],
    [{ deviceId: 'cap-2', reportingIntervalSeconds: 0 }, /reportingIntervalSeconds/],
    [{ deviceId: 'cap-2', reportingIntervalSeconds: 90_000 }, /reportingIntervalSeconds/],
  ] as const) {
    const res = await call('POST', '/v1/facilities/facA/devices', 'admin', body);
    t.equal(res.status, 400, JSON.stringify(body));
    t.equal(errorCode(t, res.body), 'VALIDATION_FAILED');
    t.match((res.body as { error: { message: string } }).error.message, why, 'the message names the problem');
  }
  const cap = await call('PATCH', '/v1/devices/cap-1', 'regulator', { capacity: 1000 });
  t.match(cap.body, { capacity: '1000' });
  const noReason = await call('PATCH', '/v1/devices/cap-1', 'regulator', { status: 'decommissioned' });
  t.equal(noReason.status, 400);
  t.match((noReason.body as { error: { message: string } }).error.message, /reason is required/);
  t.same(h.broker.disconnected, [], 'a refused request disconnects nothing');
  t.equal((await call('PATCH', '/v1/devices/cap-1', 'facA', { status: 'decommissioned', reason: 'x' })).status, 403, 'not a facility');
  const dec = await call('PATCH', '/v1/devices/cap-1', 'regulator', { status: 'decommissioned', reason: 'meter removed' });
  t.equal(dec.status, 200);
  t.match(dec.body, { status: 'decommissioned', decommissionReason: 'meter removed', decommissionedAt: /^\d{4}-/ });
  t.same(h.broker.disconnected, ['device:cap-1'], 'decommissioning disconnects the device');
  const back = await call('PATCH', '/v1/devices/cap-1', 'admin', { status: 'active' });
  t.equal(back.status, 409, 'final: no way back');
  t.equal(errorCode(t, back.body), 'DEVICE_DECOMMISSIONED');
});

t.test('readings and rejections', async (t) => {
  const { h, call } = await setup(t);
  const r = await call('GET', '/v1/facilities/facA/readings', 'facA');
  t.equal(r.status, 200);
  t.same((r.body as { items: unknown[] }).items, [
    { deviceId: 'meterA', seq: 2, ts: new Date(T0 + 10_000).toISOString(), metric: 'electricity_import', value: '1005.25', unit: 'kWh' },
    { deviceId: 'cems', seq: 7, ts: new Date(T0 + 5_000).toISOString(), metric: 'co2_direct', value: '1.5', unit: 'kg', reset: true, late: true },
    { deviceId: 'meterA', seq: 1, ts: new Date(T0).toISOString(), metric: 'electricity_import', value: '1000', unit: 'kWh' },
  ]);
  const f = await call('GET', `/v1/facilities/facA/readings?metric=electricity_import&deviceId=meterA&from=${new Date(T0 + 1).toISOString()}&to=${T0 + 20_000}&limit=5`, 'admin');
  t.same((f.body as { items: { seq: number }[] }).items.map((x) => x.seq), [2], 'filters applied');
  for (const q of ['metric=steam', 'limit=0', 'limit=abc', 'from=yesterday', 'deviceId=a%20b', 'other=1', `from=${T0 + 5}&to=${T0}`]) {
    const res = await call('GET', `/v1/facilities/facA/readings?${q}`, 'admin');
    t.equal(res.status, 400, `400 for ${q}`);
    t.equal(errorCode(t, res.body), 'VALIDATION_FAILED');
  }
  t.equal((await call('GET', '/v1/facilities/facB/readings', 'facA')).status, 403, 'facility A cannot read facility B readings');
  t.equal((await call('GET', '/v1/facilities/nope/readings', 'admin')).status, 404);

  h.registry.addRejections([{ facilityId: 'facA', deviceId: 'meterA', receivedAt: T0, reason: 'register_backwards', detail: 'value below 1005.25', payload: '{"seq":3}' }]);
  const rej = await call('GET', '/v1/facilities/facA/rejections', 'facA');
  t.equal(rej.status, 200);
  t.match((rej.body as { items: unknown[] }).items, [{ deviceId: 'meterA', receivedAt: new Date(T0).toISOString(), reason: 'register_backwards', payload: '{"seq":3}' }]);
  t.same(((await call('GET', '/v1/facilities/facB/rejections', 'facB')).body as { items: unknown[] }).items, [], 'B sees none of A');
  t.equal((await call('GET', '/v1/facilities/facB/rejections', 'facA')).status, 403);
  t.equal((await call('GET', '/v1/facilities/facA/rejections?limit=-1', 'admin')).status, 400);
  t.equal((await call('GET', '/v1/facilities/nope/rejections', 'admin')).status, 404);
});

t.test('balance from the chain, cached briefly', async (t) => {
  const { h, call } = await setup(t, { chainCacheMs: 60_000 });
  // The balance is what the owner holds of the facility's batches, summed over vintages.
  h.ledger.setBatch('facA', 202610, { issued: 10_000_000n, burned: 1n, retired: 7_654_321n, ownerBalance: 2_345_678n });
  h.ledger.setBatch('facA', 202611, { issued: 10_000_000n, ownerBalance: 10_000_000n });
  const r = await call('GET', '/v1/facilities/facA/balance', 'facA');
  t.equal(r.status, 200);
  t.same(r.body, {
    facilityId: 'facA',
    owner: ethers.getAddress(OWNER_A),
    balanceGrams: '12345678',
    mintedGrams: '20000000',
    burnedGrams: '1',
    retiredGrams: '7654321',
    deficitGrams: '0',
    balanceTonnes: '12.345678',
    suspended: false,
  });
  const facilityReads = () => h.ledger.calls.filter((c) => c === 'facility').length;
  const reads = facilityReads();
  await call('GET', '/v1/facilities/facA/balance', 'admin');
  t.equal(facilityReads(), reads, 'second read served from the cache');
  await call('PATCH', '/v1/facilities/facA', 'admin', { status: 'suspended' });
  const after = await call('GET', '/v1/facilities/facA/balance', 'admin');
  t.equal((after.body as { suspended: boolean }).suspended, true, 'our own chain writes invalidate the cache');
  t.equal((await call('GET', '/v1/facilities/facA/balance', 'facB')).status, 403);
  t.equal((await call('GET', '/v1/facilities/nope/balance', 'admin')).status, 404);
  h.ledger.facility = async () => {
    throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8545'), { code: 'ECONNREFUSED' });
  };
  const down = await call('GET', '/v1/facilities/facB/balance', 'admin');
  t.equal(down.status, 503, 'an unreachable node is a 503, not a 500');
  t.equal(errorCode(t, down.body), 'CHAIN_UNAVAILABLE');
});

t.test('a backend that is absent answers 503 in the error format', async (t) => {
  const h = await startGateway(t, { deps: { ledger: undefined, settlements: undefined, audit: undefined, readings: undefined } });
  for (const url of ['/v1/facilities/facA/balance', '/v1/settlements', '/v1/retirements', '/v1/facilities/facA/readings']) {
    const r = await h.app.inject({ url, headers: h.auth('admin') });
    t.equal(r.statusCode, 503, url);
    t.equal(r.json().error.code, 'BACKEND_UNAVAILABLE');
  }
  const health = await h.app.inject({ url: '/health' });
  t.equal(health.statusCode, 200, 'absent backends are reported, not failed');
  t.match(health.json().backends, { chain: { configured: false }, oracle: { configured: false } });
});

t.test('settlements, verification and proofs', async (t) => {
  const { call } = await setup(t);
  const all = await call('GET', '/v1/settlements', 'regulator');
  t.equal((all.body as { items: unknown[] }).items.length, 2);
  t.same((all.body as { items: { id: string }[] }).items.map((s) => s.id), ['facB:1', 'facA:1'], 'newest window first, then facility id descending');
  t.same((all.body as { items: { id: string }[] }).items.find((s) => s.id === 'facA:1'), {
    id: 'facA:1',
    facilityId: 'facA',
    windowStart: new Date(T0).toISOString(),
    windowEnd: new Date(T0 + 10_000).toISOString(),
    complete: true,
    netGrams: '7317',
    mintedGrams: '7317',
    burnedGrams: '0',
    deficitGrams: '0',
    deficitAddedGrams: '0',
    deficitPaidGrams: '0',
    deficitAfterGrams: '0',
    evidenceRoot: '0x' + '11'.repeat(32),
    txHash: '0x' + '22'.repeat(32),
    bundleUrl: '/v1/settlements/facA%3A1/bundle',
  });
  t.match((all.body as { items: { id: string }[] }).items.find((s) => s.id === 'facB:1'), { netGrams: '-20', burnedGrams: '0', deficitAddedGrams: '20', deficitPaidGrams: '0', deficitAfterGrams: '20', deficitGrams: '20' });
  const mine = await call('GET', '/v1/settlements', 'facA');
  t.same((mine.body as { items: { id: string }[] }).items.map((s) => s.id), ['facA:1'], 'a facility key lists only its own');
  t.equal((await call('GET', '/v1/settlements?facilityId=facB', 'facA')).status, 403);
  t.equal(((await call('GET', `/v1/settlements?from=${T0 + 1}`, 'admin')).body as { items: unknown[] }).items.length, 0, 'time filter');
  t.equal((await call('GET', '/v1/settlements?from=soon', 'admin')).status, 400);
  t.equal((await call('GET', '/v1/settlements/facB:1', 'facA')).status, 403, 'facility A cannot open a settlement of B');
  const missing = await call('GET', '/v1/settlements/nope', 'admin');
  t.equal(missing.status, 404);
  t.equal(errorCode(t, missing.body), 'SETTLEMENT_NOT_FOUND');
  t.equal((await call('GET', '/v1/settlements/bad%20id', 'admin')).status, 400);

  const v = await call('GET', '/v1/settlements/facA:1/verify', 'facA');
  t.same(v.body, { match: true, onChain: { found: true, evidenceRoot: '0x' + '11'.repeat(32), netGrams: '7317', txHash: null }, recomputed: RECOMPUTED, recorded: { evidenceRoot: '0x' + '11'.repeat(32), netGrams: '7317' } });
  t.equal((await call('GET', '/v1/settlements/facB:1/verify', 'facA')).status, 403);
  t.equal((await call('GET', '/v1/settlements/nope/verify', 'admin')).status, 404);

  const p = await call('GET', '/v1/settlements/facA:1/proof?deviceId=meterA&seq=2', 'admin');
  t.same(p.body, { root: '0x' + '11'.repeat(32), leaf: [...LEAF], leafEncoding: ['string', 'string', 'int256', 'int256', 'string', 'string', 'bool', 'bool'], proof: ['0x' + '44'.repeat(32)] });
  const notIn = await call('GET', '/v1/settlements/facA:1/proof?deviceId=meterA&seq=99', 'admin');
  t.equal(notIn.status, 404);
  t.equal(errorCode(t, notIn.body), 'PROOF_NOT_FOUND');
  t.equal((await call('GET', '/v1/settlements/facA:1/proof?deviceId=meterA', 'admin')).status, 400, 'seq required');
  t.equal((await call('GET', '/v1/settlements/facA:1/proof?deviceId=meterA&seq=-1', 'admin')).status, 400);
  t.equal((await call('GET', '/v1/settlements/facB:1/proof?deviceId=meterB&seq=1', 'facA')).status, 403);
});

t.test('retirements: list from the chain, relay of a holder-signed request', async (t) => {
  const { h, call } = await setup(t);
  const batchId = h.ledger.setBatch('facA', 202311, { ownerBalance: 1_500_000n });
  const signed = { holder: OWNER_A, batchIds: [batchId], amounts: ['1500000'], beneficiary: 'City of X', reason: '2026 offset', nonce: '0', deadline: '4102444800', signature: '0x' + 'ab'.repeat(65) };
  h.ledger.chain.now = () => 1_700_000_000_000;
  const r = await call('POST', '/v1/retirements', 'facA', signed);
  t.equal(r.status, 201);
  const txHash = (r.body as { txHash: string }).txHash;
  t.same(r.body, { txHash, id: '1' });
  t.match(txHash, /^0x[0-9a-f]{64}$/);
  t.same(h.ledger.writes, [`retire ${OWNER_A} ${batchId}:1500000 0 4102444800`], 'submitted as signed; the gateway holds no holder key');
  const list = await call('GET', '/v1/retirements', 'facA');
  const certificate = {
    id: '1',
    account: ethers.getAddress(OWNER_A),
    facilityIds: ['facA'],
    parts: [{ batchId, facilityId: 'facA', vintage: '2023-11', amountGrams: '1500000', firstSerial: 'facA-2023-11-1', lastSerial: 'facA-2023-11-1500000' }],
    amountGrams: '1500000',
    amountTonnes: '1.5',
    beneficiary: 'City of X',
    reason: '2026 offset',
    retiredAt: '2023-11-14T22:13:20.000Z',
    txHash,
  };
  t.same((list.body as { items: unknown[] }).items, [certificate]);
  t.same(((await call('GET', '/v1/retirements', 'facB')).body as { items: unknown[] }).items, [], 'facility B sees none of A');
  t.equal((await call('GET', '/v1/retirements?facilityId=facA', 'facB')).status, 403);
  t.equal(((await call('GET', `/v1/retirements?account=${OWNER_A}`, 'regulator')).body as { items: unknown[] }).items.length, 1);
  t.equal((await call('GET', '/v1/retirements?account=0x12', 'regulator')).status, 400);

  t.equal((await call('POST', '/v1/retirements', 'facB', signed)).status, 403, "facility B cannot relay for A's owner");
  const again = await call('POST', '/v1/retirements', 'admin', signed);
  t.same([again.status, again.body], [200, { txHash, id: '1', alreadySubmitted: true }], 'the same request again: the retirement it produced');
  const forged = await call('POST', '/v1/retirements', 'admin', { ...signed, nonce: '1', signature: '0x' + 'ab'.repeat(64) + '00' });
  t.equal(forged.status, 422);
  t.match(forged.body, { error: { code: 'RELAY_REJECTED', message: /^retirement rejected: the signature is not that of account 0x.*\[InvalidRetirementSignature\(0x/ } });
  // an undecoded revert is said as describeChainError's sentence (the one the CLI prints), not ethers' text
  h.ledger.retireWithSig = async () => {
    throw Object.assign(new Error('execution reverted: InvalidSignature()'), { code: 'CALL_EXCEPTION', reason: 'InvalidSignature()' });
  };
  const reverted = await call('POST', '/v1/retirements', 'admin', { ...signed, nonce: '1' });
  t.equal(reverted.status, 422);
  t.match(reverted.body, { error: { code: 'RELAY_REJECTED', message: /InvalidSignature/ } });
  t.equal(
    (reverted.body as { error: { message: string } }).error.message,
    'retirement rejected: the contract refused without saying why: check that the address is a CreditLedger on this chain (InvalidSignature())',
  );
  for (const bad of [{ ...signed, amounts: ['0'] }, { ...signed, amounts: [] }, { ...signed, amounts: ['1', '2'] }, { ...signed, batchIds: ['x'] }, { ...signed, signature: '0x12' }, { ...signed, holder: 'me' }, { ...signed, extra: 1 }]) {
    t.equal((await call('POST', '/v1/retirements', 'admin', bad)).status, 400);
  }
  t.equal((await call('POST', '/v1/retirements', 'none', signed)).status, 401);
});

t.test('batches, holdings and certificates from the chain; the certificate page escapes what the holder wrote', async (t) => {
  const { h, call } = await setup(t);
  const W = 10_000;
  const start = Date.UTC(2026, 10, 30, 23, 59, 50); // the last window of November 2026
  h.ledger.chain.now = () => start + 3 * W;
  // facA's windows: one in November (mints 1,000 g), one in December (mints 500 g).
  const ledger = h.ledger;
  await ledger.deregisterFacility('facA'); // registered at window 0 by the harness: moved to now
  await ledger.registerFacility('facA', OWNER_A, '3600', start);
  const nov = await ledger.settleBatch([{ facilityId: 'facA', windowStart: start, windowEnd: start + W, netGrams: 1_000n, evidenceRoot: ethers.id('nov') }]);
  await ledger.settleBatch([{ facilityId: 'facA', windowStart: start + W, windowEnd: start + 2 * W, netGrams: 500n, evidenceRoot: ethers.id('dec') }]);

  const batches = await call('GET', '/v1/batches?facilityId=facA', 'facA');
  t.equal(batches.status, 200);
  const items = (batches.body as { items: { id: string; vintage: string; issuedGrams: string; serialPrefix: string }[] }).items;
  t.same(items.map((b) => [b.vintage, b.issuedGrams, b.serialPrefix]), [
    ['2026-11', '1000', 'facA-2026-11-'],
    ['2026-12', '500', 'facA-2026-12-'],
  ]);
  t.equal((await call('GET', '/v1/batches?facilityId=facA', 'facB')).status, 403, 'a facility key sees its own batches only');
  t.equal((await call('GET', '/v1/batches?facilityId=nope', 'admin')).status, 404);
  t.equal((await call('GET', '/v1/batches', 'admin')).status, 400);

  const holdings = await call('GET', `/v1/accounts/${OWNER_A}/holdings`, 'regulator');
  t.equal(holdings.status, 200);
  t.match(holdings.body, { account: ethers.getAddress(OWNER_A), totalGrams: '1500', items: [{ vintage: '2026-11', balanceGrams: '1000' }, { vintage: '2026-12', balanceGrams: '500' }] });
  t.equal((await call('GET', '/v1/accounts/0x12/holdings', 'regulator')).status, 400);
  const typo = ethers.getAddress(OWNER_A).replace(/[a-f]/, (c) => c.toUpperCase());
  const bad = await call('GET', `/v1/accounts/${typo}/holdings`, 'regulator');
  t.equal(bad.status, 400, 'a wrong EIP-55 checksum is refused, not read as another account');
  t.match(bad.body, { error: { code: 'VALIDATION_FAILED', message: /EIP-55 checksum/ } });

  // A retirement over both batches, with a beneficiary that is markup.
  const evil = '<script>alert("x")</script> & Co';
  const owner = h.ledger.connect(OWNER_A);
  await owner.retire([BigInt(items[0].id), BigInt(items[1].id)], [600n, 100n], evil, "it's <b>bold</b>");
  const cert = await call('GET', '/v1/retirements/1', 'none');
  t.equal(cert.status, 200, 'certificates are public');
  t.match(cert.body, {
    id: '1',
    beneficiary: evil,
    amountGrams: '700',
    parts: [
      { facilityId: 'facA', vintage: '2026-11', amountGrams: '600', firstSerial: 'facA-2026-11-1', lastSerial: 'facA-2026-11-600' },
      { facilityId: 'facA', vintage: '2026-12', amountGrams: '100', firstSerial: 'facA-2026-12-1', lastSerial: 'facA-2026-12-100' },
    ],
    settlements: [
      { facilityId: 'facA', mintedGrams: '1000', firstSerial: 'facA-2026-11-1', lastSerial: 'facA-2026-11-1000', evidenceRoot: ethers.id('nov'), txHash: nov.txHash, verifyUrl: `/v1/settlements/facA-${start}/verify` },
      { facilityId: 'facA', mintedGrams: '500', firstSerial: 'facA-2026-12-1', evidenceRoot: ethers.id('dec') },
    ],
  });
  const page = await h.app.inject({ method: 'GET', url: '/v1/retirements/1', headers: { accept: 'text/html,application/xhtml+xml' } });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /^text\/html/);
  t.notMatch(page.body, /<script>/, 'no markup from the holder reaches the page');
  t.notMatch(page.body, /<b>bold/);
  t.match(page.body, /&#60;script&#62;alert\(&#34;x&#34;\)&#60;&#47;script&#62; &#38; Co/);
  t.match(page.body, /facA-2026-11-1<\/td><td class="serial">facA-2026-11-600/);
  t.match(page.body, new RegExp(ethers.id('nov')));
  const missing = await call('GET', '/v1/retirements/9', 'none');
  t.equal(missing.status, 404);
  t.equal(errorCode(t, missing.body), 'RETIREMENT_NOT_FOUND');
  t.equal((await call('GET', '/v1/retirements/0', 'none')).status, 400);
  t.equal((await call('GET', '/v1/retirements/x', 'none')).status, 400);
});

t.test('ops: health, metrics, OpenAPI lists every route, docs, dashboard, 404', async (t) => {
  const { h, call } = await setup(t, { graceSeconds: 3 });
  const health = await call('GET', '/health', 'none');
  t.equal(health.status, 200);
  t.match(health.body, { status: 'ok', backends: { registry: { ok: true }, store: { ok: true }, chain: { ok: true, blockNumber: Number }, broker: { ok: true }, oracle: { ok: true } } });
  t.same((health.body as { settlement: unknown }).settlement, { windowSeconds: 10, graceSeconds: 3 }, 'the windows this stack settles, for simulators and tools');
  h.ledger.blockNumber = async () => {
    throw new Error('ECONNREFUSED');
  };
  const down = await call('GET', '/health', 'none');
  t.equal(down.status, 503);
  t.match(down.body, { status: 'degraded', backends: { chain: { ok: false, configured: true, detail: /ECONNREFUSED/ } } });

  await call('GET', '/v1/facilities/facA', 'facA');
  const m = await call('GET', '/metrics', 'regulator');
  t.equal(m.status, 200);
  t.match(m.headers['content-type'], /text\/plain/);
  t.match(m.body as string, /mrv_http_requests_total\{method="GET",route="\/v1\/facilities\/:id",status="200"\} 1/);
  t.match(m.body as string, /mrv_http_request_duration_seconds_bucket/);

  const doc = (await call('GET', '/openapi.json', 'none')).body as { openapi: string; paths: Record<string, Record<string, unknown>> };
  t.equal(doc.openapi, '3.0.3');
  const expected: [string, string][] = [
    ['/health', 'get'], ['/metrics', 'get'], ['/openapi.json', 'get'], ['/', 'get'],
    ['/v1/api-keys', 'post'], ['/v1/api-keys', 'get'], ['/v1/api-keys/{id}', 'delete'],
    ['/v1/facilities', 'post'], ['/v1/facilities', 'get'], ['/v1/facilities/{id}', 'get'], ['/v1/facilities/{id}', 'patch'],
    ['/v1/facilities/{id}/devices', 'post'], ['/v1/facilities/{id}/devices', 'get'], ['/v1/devices/{deviceId}', 'patch'],
    ['/v1/facilities/{id}/readings', 'get'], ['/v1/facilities/{id}/rejections', 'get'], ['/v1/facilities/{id}/balance', 'get'],
    ['/v1/settlements', 'get'], ['/v1/settlements/{id}', 'get'], ['/v1/settlements/{id}/verify', 'get'], ['/v1/settlements/{id}/proof', 'get'],
    ['/v1/retirements', 'get'], ['/v1/retirements', 'post'],
  ];
  for (const [p, method] of expected) t.ok(doc.paths[p]?.[method], `OpenAPI has ${method.toUpperCase()} ${p}`);
  t.match(doc.paths['/v1/facilities']?.post, { requestBody: { content: { 'application/json': { schema: { required: ['id', 'name', 'owner', 'baselineKgPerHour'] } } } } }, 'schemas shared with validation');
  t.match(doc.paths['/v1/facilities/{id}/readings']?.get, { responses: { 200: { content: { 'application/json': { schema: { properties: { items: { items: { properties: { late: {}, value: {} } } } } } } } } } }, 'ReadingView reused');
  const docs = await h.app.inject({ url: '/docs' });
  t.ok([200, 302].includes(docs.statusCode), 'swagger UI served');

  const page = await h.app.inject({ url: '/' });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /text\/html/);
  t.match(page.body, /<script type="module" src="\/assets\/app.js">/);
  t.match(page.headers['content-security-policy'], /script-src 'self'/);
  t.notMatch(page.headers['content-security-policy'], /unsafe-inline|upgrade-insecure/);
  t.equal(page.headers['x-content-type-options'], 'nosniff');
  t.equal(page.headers['x-frame-options'], 'SAMEORIGIN');
  const chart = await h.app.inject({ url: '/assets/chart.umd.min.js' });
  t.equal(chart.statusCode, 200);
  t.match(chart.body.slice(0, 300), /Chart\.js v4/);

  const nf = await call('GET', '/v1/nothing', 'admin');
  t.equal(nf.status, 404);
  t.equal(errorCode(t, nf.body), 'ROUTE_NOT_FOUND');
  const nf2 = await call('POST', '/v1/facilities/facA', 'admin', {});
  t.equal(nf2.status, 404, 'unknown method on a known path');
});

t.test('rate limit per key, and per IP without a valid key', async (t) => {
  const { call } = await setup(t, { rateLimitMax: 3, rateLimitWindowMs: 60_000 });
  for (let i = 0; i < 3; i++) t.equal((await call('GET', '/v1/facilities', 'facA')).status, 200);
  const limited = await call('GET', '/v1/facilities', 'facA');
  t.equal(limited.status, 429);
  t.equal(errorCode(t, limited.body), 'RATE_LIMITED');
  t.ok(limited.headers['retry-after'], 'Retry-After header');
  t.equal((await call('GET', '/v1/facilities', 'facB')).status, 200, 'another key has its own budget');
  for (let i = 0; i < 3; i++) t.equal((await call('GET', '/v1/facilities', 'bogus')).status, 401);
  const anon = await call('GET', '/v1/facilities', 'none');
  t.equal(anon.status, 429, 'unauthenticated requests share the IP budget, whatever key they invent');
  t.equal((await call('GET', '/v1/nothing', 'none')).status, 429, 'the 404 handler is limited too');
  t.equal((await call('GET', '/v1/facilities', 'regulator')).status, 200);
});
