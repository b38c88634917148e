/**
 * The oracle records of a data dir written before visibility marks: the cursor table gains its
 * late-arrival count, and a recorded intent of the old format (seq high-water marks) still confirms
 * into a cursor with the equivalent mark.
 */
import t from 'tap';
import { openDatabase } from '../../store/sqlite/db.ts';
import { SqliteOracleRecords } from '../../store/sqlite/records.ts';
import { recordedMark, recordedPrev, type RecordedInputs } from '../../store/types.ts';

t.test('an old cursor table is upgraded; old-format inputs confirm with equivalent marks', async (t) => {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  db.exec(`CREATE TABLE oracle_cursors (
    device_id TEXT PRIMARY KEY, facility_id TEXT NOT NULL, settlement_id TEXT NOT NULL,
    window_end INTEGER NOT NULL, max_seq INTEGER NOT NULL, cursors TEXT NOT NULL)`);
  db.prepare("INSERT INTO oracle_cursors VALUES ('d1', 'F', 'F-0', 10000, 7, '[]')").run();
  const records = new SqliteOracleRecords(db);
  t.same(records.cursor('d1')?.mark, { maxSeq: 7, late: 0 }, 'old rows read as in-order marks');
  new SqliteOracleRecords(db); // idempotent

  // An intent recorded by the previous version: `highWater` and `prev: { maxSeq, before }`.
  const legacy = {
    methodologyVersion: 'mrv-cursor-1',
    baselineKgPerHour: '3600',
    factors: { version: 'v1', base: 'v1', gridKgPerKwh: '0.5366', gasKgPerM3: '2.162', overrides: [], hash: '0x00' },
    devices: [
      { deviceId: 'd1', highWater: 9, prev: { maxSeq: 7, before: 10_000 }, startCursors: [], endCursors: [], inWindow: true, observedBefore: true, consumedCount: 2 },
      { deviceId: 'd2', prev: { maxSeq: 3, before: 10_000 }, startCursors: [], endCursors: [], inWindow: false, observedBefore: true, consumedCount: 0 },
    ],
    lateKeys: [],
    totals: { electricity_import: '0', electricity_export: '0', renewable_generation: '0', natural_gas: '0', co2_direct: '0' },
    baselineKg: '10',
    rawNetGrams: '0',
  } as unknown as RecordedInputs;
  t.same(recordedMark(legacy.devices[0]), { maxSeq: 9, late: 0 });
  t.same(recordedPrev(legacy.devices[1]), { mark: { maxSeq: 3, late: 0 }, before: 10_000 });
  records.insertIntent({ id: 'F-10000', facilityId: 'F', windowStart: 10_000, windowEnd: 20_000, complete: true, netGrams: 0n, actualKg: '0', evidenceRoot: '0xab', inputs: legacy });
  t.equal(records.confirm('F-10000', '0xab', { mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 0n }), 'confirmed');
  t.same(records.cursor('d1')?.mark, { maxSeq: 9, late: 0 });
  t.same(records.cursor('d2')?.mark, { maxSeq: 3, late: 0 }, 'a device without readings keeps its previous mark');
  t.equal(records.cursor('d2')?.windowEnd, 20_000);
});
