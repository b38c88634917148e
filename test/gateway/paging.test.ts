/**
 * Every list route pages with ?limit= and ?cursor= (newest first, `next` absent on the last page),
 * over inject() on the real SQLite registry: facilities, devices, API keys, rejections, retirements.
 */
import t, { type Test } from 'tap';
import { startGateway, type Harness } from './harness.ts';
import { facilityFixture } from '../helpers/fixtures.ts';

/** Follows `next` from the first page; returns the pages' keys. */
async function walk(t: Test, h: Harness, url: string, key: (x: Record<string, unknown>) => string, limit: number): Promise<string[][]> {
  const pages: string[][] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 50; i++) {
    const sep = url.includes('?') ? '&' : '?';
    const res = await h.app.inject({ url: `${url}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, headers: h.auth('admin') });
    t.equal(res.statusCode, 200, `${url} page ${i} ${res.statusCode === 200 ? '' : res.body}`);
    const body = res.json() as { items: Record<string, unknown>[]; next?: string };
    t.ok(body.items.length <= limit, 'at most limit items');
    pages.push(body.items.map(key));
    cursor = body.next;
    if (!cursor) break;
  }
  return pages;
}

t.test('limit and cursor on every list', async (t) => {
  const h = await startGateway(t);
  const now = Date.now();
  h.registry.createFacility(facilityFixture('facC', { name: 'Plant C', owner: '0x' + 'c3'.repeat(20), createdAt: now + 1000 }));
  t.same(await walk(t, h, '/v1/facilities', (f) => String(f.id), 2), [['facC', 'facB'], ['facA']], 'facilities: newest registration first (then id descending)');

  for (const d of ['d1', 'd2', 'd3']) h.registry.createDevice('facA', d, 'meter');
  t.same((await walk(t, h, '/v1/facilities/facA/devices', (d) => String(d.deviceId), 2)).flat().sort(), ['d1', 'd2', 'd3'], 'devices: each once');

  t.same((await walk(t, h, '/v1/api-keys', (k) => String(k.id), 1)).flat().length, 4, 'api keys: each once, one per page');

  h.registry.addRejections([1, 2, 3, 4, 5].map((i) => ({ facilityId: 'facA', deviceId: `d${i}`, receivedAt: now + i, reason: 'invalid_json' as const, payload: `{${i}` })));
  t.same(await walk(t, h, '/v1/facilities/facA/rejections', (r) => String(r.deviceId), 2), [['d5', 'd4'], ['d3', 'd2'], ['d1']], 'rejections: newest first');

  for (const i of [1, 2, 3, 10]) h.ledger.recordRetirement({ id: BigInt(i), account: '0x' + 'a1'.repeat(20), parts: [{ batchId: '1', facilityId: 'facA', vintage: 202611, amountGrams: 1n, firstSerial: BigInt(i), lastSerial: BigInt(i) }], amountGrams: 1n, beneficiary: 'b', reason: 'r' });
  t.same(await walk(t, h, '/v1/retirements', (r) => String(r.id), 3), [['10', '3', '2'], ['1']], 'retirements: newest (highest id) first, ids compared as numbers');

  for (const url of ['/v1/facilities?cursor=xyz', '/v1/retirements?cursor=WyJhIiwxXQ', '/v1/settlements?cursor=WzEsMl0', '/v1/facilities/facA/rejections?cursor=WyJhIl0']) {
    const res = await h.app.inject({ url, headers: h.auth('admin') });
    t.equal(res.statusCode, 400, `${url}: a cursor of another list is refused`);
    t.match(res.json().error, { code: 'VALIDATION_FAILED', message: /cursor .* is not a cursor of this list/ });
  }
  const tooMany = await h.app.inject({ url: '/v1/facilities?limit=1001', headers: h.auth('admin') });
  t.match(tooMany.json().error.message, /query parameter limit must be an integer from 1 to 1000 \(got 1001\)/);
});
