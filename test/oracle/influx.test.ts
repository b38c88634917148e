/**
 * The oracle over the InfluxDB reading store (a real influxd 1.x this test starts) settles exactly
 * what it settles over the embedded SQLite store: the same readings committed at the same moments,
 * the same runOnce(now) calls, and every settlement equal in net, completeness, late readings, end
 * cursors and evidence root; verify() on the InfluxDB side recomputes and matches.
 * Covers a late reading, a reading exactly on a window end, a register reset and interval CO2.
 */
import t, { type Test } from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import type { Metric, Reading } from '../../domain/reading.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openInfluxStore } from '../../store/influx/store.ts';
import type { SqliteRegistry } from '../../store/sqlite/registry.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import type { ReadingStore } from '../../store/types.ts';
import { buildOracle, type Oracle } from '../../oracle/oracle.ts';
import { requireInfluxd, startInfluxd } from '../helpers/influxd.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';

const W = 10_000;
const GRACE = 2_000;

function rd(deviceId: string, seq: number, ts: number, metric: Metric, value: string, reset = false): Reading {
  const unit = metric === 'natural_gas' ? 'm3' : metric === 'co2_direct' ? 'kg' : 'kWh';
  return { facilityId: 'F', deviceId, seq, ts, metric, value, unit, reset, receivedAt: ts };
}

/** An oracle on its own SQLite file (registry, records), with readings in `readings` or in that file. */
function side(t: Test, readingsFor: (sqlite: ReadingStore, registry: SqliteRegistry) => ReadingStore): { oracle: Oracle; readings: ReadingStore } {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const stores = openSqliteStores(db, { clock: () => 0 });
  stores.registry.createFacility({ id: 'F', name: 'F', owner: '0x1111111111111111111111111111111111111111', baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: 0 });
  stores.registry.createDevice('F', 'd1', 'meter');
  stores.registry.createDevice('F', 'd2', 'cems');
  const readings = readingsFor(stores.readings, stores.registry);
  const oracle = buildOracle({ db, readings, registry: stores.registry, ledger: new MemoryLedger(), logger: silentLogger, windowMs: W, graceMs: GRACE });
  t.teardown(() => oracle.close());
  return { oracle, readings };
}

if (requireInfluxd(t)) {
  const ix = await startInfluxd();
  t.teardown(() => ix.close());

  t.test('same settlements over InfluxDB as over SQLite', async (t) => {
    await ix.createDatabase('oracle');
    const sqlite = side(t, (s) => s);
    const influx = side(t, (_sqlite, registry) => {
      // Wired as store/open.ts does: capacity, interval and kind from the registry.
      const store = openInfluxStore({ url: ix.url, database: 'oracle', logger: silentLogger, flushMs: 2, limits: (id) => registry.deviceLimits(id) });
      t.teardown(() => store.close());
      return store;
    });
    const steps: { commit: Reading[][]; now: number }[] = [
      {
        commit: [
          [rd('d1', 1, 5_000, 'electricity_import', '1000'), rd('d2', 1, 6_000, 'natural_gas', '50'), rd('d2', 2, 7_000, 'co2_direct', '1.5')],
          [rd('d1', 2, 15_000, 'electricity_import', '1005'), rd('d2', 3, 14_000, 'natural_gas', '52'), rd('d2', 4, 16_000, 'co2_direct', '2.25')],
        ],
        now: 22_000,
      },
      {
        commit: [
          // seq 3 is late for window 1 (already settled); seq 5 sits exactly on window 2's end.
          [rd('d1', 3, 18_000, 'electricity_import', '1006'), rd('d1', 4, 25_000, 'electricity_import', '1010'), rd('d1', 5, 30_000, 'electricity_import', '1011')],
          // d2's gas register is replaced (reset) inside window 2.
          [rd('d2', 5, 24_000, 'natural_gas', '53'), rd('d2', 6, 27_000, 'natural_gas', '3', true), rd('d2', 7, 29_000, 'natural_gas', '4'), rd('d2', 8, 28_000, 'co2_direct', '0.75')],
        ],
        now: 32_000,
      },
      { commit: [[rd('d1', 6, 35_000, 'electricity_import', '1012'), rd('d2', 9, 36_000, 'natural_gas', '5')]], now: 42_000 },
    ];
    for (const step of steps) {
      for (const batch of step.commit) {
        const [a, b] = await Promise.all([sqlite.readings.commit(batch), influx.readings.commit(batch)]);
        t.same(b, a, `commit outcomes agree (seqs ${batch.map((r) => `${r.deviceId}:${r.seq}`).join(' ')})`);
      }
      const [ra, rb] = await Promise.all([sqlite.oracle.runOnce(step.now), influx.oracle.runOnce(step.now)]);
      t.equal(rb.settled, ra.settled, `runOnce(${step.now}) settles as many windows on both`);
    }
    const fields = (s: ReturnType<Oracle['getSettlement']>) =>
      s && { complete: s.complete, netGrams: s.netGrams, actualKg: s.actualKg, evidenceRoot: s.evidenceRoot, late: s.inputs.lateKeys, devices: s.inputs.devices };
    let compared = 0;
    for (let start = 0; start < 40_000; start += W) {
      const a = sqlite.oracle.getSettlement(`F-${start}`);
      const b = influx.oracle.getSettlement(`F-${start}`);
      t.ok(a && b, `window ${start} settled on both`);
      t.same(fields(b), fields(a), `window ${start}: same net, completeness, late readings, cursors, evidence root`);
      compared++;
      const v = await influx.oracle.verify(`F-${start}`);
      t.equal(v.match, true, `window ${start}: verify over InfluxDB recomputes the chain's figures`);
    }
    t.equal(compared, 4);
    t.same(sqlite.oracle.getSettlement('F-10000')?.inputs.lateKeys, [], 'window 1 had nothing late');
    t.same(sqlite.oracle.getSettlement('F-20000')?.inputs.lateKeys, ['d1:3'], 'window 2 counts d1:3 late');
  });
}
