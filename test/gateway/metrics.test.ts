/**
 * /metrics carries one series per facility for each facility gauge (labels docs/API.md promises),
 * read at scrape time from the real SQLite registry and the oracle's records.
 */
import t from 'tap';
import type { GatewaySettlements, SettlementRecord } from '../../gateway/deps.ts';
import { startGateway } from './harness.ts';

const T0 = Date.UTC(2026, 10, 22, 6, 0, 0);

t.test('facility-labelled gauges on /metrics', async (t) => {
  const settlements: SettlementRecord[] = [0, 1, 2].map((i) => ({
    id: `facA-${T0 + i * 10_000}`, facilityId: 'facA', windowStart: T0 + i * 10_000, windowEnd: T0 + (i + 1) * 10_000, complete: true,
    netGrams: BigInt(1000 + i), mintedGrams: BigInt(1000 + i), burnedGrams: 0n, deficitGrams: 0n, evidenceRoot: '0x' + '11'.repeat(32), txHash: null,
  }));
  const records: GatewaySettlements = {
    listSettlements: (q) => settlements.filter((s) => !q.facilityId || s.facilityId === q.facilityId),
    getSettlement: (id) => settlements.find((s) => s.id === id),
    facilityStatus: (id) => (id === 'facB' ? { settlementStatus: 'blocked', reason: 'x' } : { settlementStatus: 'ok' }),
  };
  const h = await startGateway(t, { deps: { settlements: records } });
  h.registry.createDevice('facA', 'd1', 'meter');
  h.registry.createDevice('facA', 'd2', 'meter');
  h.registry.setOnline('d1', true, Date.now());
  h.registry.updateFacility('facB', { status: 'suspended' });
  const res = await h.app.inject({ url: '/metrics', headers: h.auth('regulator') });
  t.equal(res.statusCode, 200);
  const text = res.body;
  const value = (series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(series + ' '));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
  t.equal(value('mrv_facility_active{facility="facA"}'), 1);
  t.equal(value('mrv_facility_active{facility="facB"}'), 0, 'suspended');
  t.equal(value('mrv_facility_devices{facility="facA",status="active"}'), 2);
  t.equal(value('mrv_facility_devices_online{facility="facA"}'), 1);
  t.equal(value('mrv_facility_settlement_blocked{facility="facB"}'), 1);
  t.equal(value('mrv_facility_settlement_blocked{facility="facA"}'), 0);
  t.equal(value('mrv_facility_last_settled_window_end_seconds{facility="facA"}'), (T0 + 30_000) / 1000, 'the newest settlement');
  t.equal(value('mrv_facility_last_settlement_net_grams{facility="facA"}'), 1002);
  t.equal(value('mrv_facility_last_settled_window_end_seconds{facility="facB"}'), undefined, 'never settled: no series');
  t.equal(text.split('\n').filter((l) => l.startsWith('mrv_facility_active{')).length, 2, 'one series per facility');
});
