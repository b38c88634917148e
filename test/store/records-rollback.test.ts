/**
 * records.rollbackFrom with visibility marks: when the chain lost settlements, each device's cursor
 * goes back to the mark (seq and late-arrival count) and register cursors the first lost settlement
 * started from; a device the lost settlement saw first loses its cursor. Old-format records
 * (`prev: { maxSeq, before }`) roll back to the equivalent mark.
 */
import t from 'tap';
import { openDatabase } from '../../store/sqlite/db.ts';
import { SqliteOracleRecords } from '../../store/sqlite/records.ts';
import type { PrevConsumed, RegisterCursor } from '../../oracle/methodology.ts';
import type { RecordedDevice, RecordedInputs, VisibilityMark } from '../../store/types.ts';

const W = 10_000;
const cursorAt = (seq: number): RegisterCursor[] => [{ metric: 'electricity_import', seq, ts: seq * 1000, value: String(seq) }] as unknown as RegisterCursor[];

function device(deviceId: string, mark: VisibilityMark, prev: PrevConsumed | undefined, start: number, end: number): RecordedDevice {
  return { deviceId, mark, ...(prev ? { prev } : {}), startCursors: cursorAt(start), endCursors: cursorAt(end) } as unknown as RecordedDevice;
}

function inputs(devices: RecordedDevice[]): RecordedInputs {
  return { methodologyVersion: 'mrv-cursor-2', devices, lateKeys: [] } as unknown as RecordedInputs;
}

t.test('rolling back restores the previous mark, late arrivals included', async (t) => {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const records = new SqliteOracleRecords(db);
  const settle = (k: number, devices: RecordedDevice[], root: string) => {
    const id = `F-${k * W}`;
    records.insertIntent({ id, facilityId: 'F', windowStart: k * W, windowEnd: (k + 1) * W, complete: true, netGrams: 0n, actualKg: '0', evidenceRoot: root, inputs: inputs(devices) });
    t.equal(records.confirm(id, root, { mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 0n }), 'confirmed');
  };
  settle(0, [device('d1', { maxSeq: 5, late: 0 }, undefined, 0, 5)], '0x00');
  settle(1, [device('d1', { maxSeq: 9, late: 2 }, { mark: { maxSeq: 5, late: 0 }, before: W }, 5, 9)], '0x01');
  settle(2, [device('d1', { maxSeq: 12, late: 3 }, { mark: { maxSeq: 9, late: 2 }, before: 2 * W }, 9, 12), device('d2', { maxSeq: 4, late: 0 }, undefined, 0, 4)], '0x02');
  t.same(records.cursor('d1')?.mark, { maxSeq: 12, late: 3 });

  t.same(records.rollbackFrom('F', 2 * W), ['F-20000']);
  const c = records.cursor('d1');
  t.same(c?.mark, { maxSeq: 9, late: 2 }, 'the mark window 2 started from, with its late arrivals');
  t.equal(c?.windowEnd, 2 * W);
  t.equal(c?.settlementId, 'F-10000');
  t.same(c?.cursors, cursorAt(9), 'register cursors window 2 started from');
  t.equal(records.cursor('d2'), undefined, 'a device first seen by the lost window has no cursor');
  t.equal(records.getSettlement('F-20000'), undefined, 'no longer confirmed');

  // Settled again, then lost from window 1: back to window 1's start.
  t.equal(records.confirm('F-20000', '0x02', { mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 0n }), 'confirmed');
  t.same(records.rollbackFrom('F', W), ['F-10000', 'F-20000']);
  t.same(records.cursor('d1')?.mark, { maxSeq: 5, late: 0 });
  t.equal(records.cursor('d1')?.windowEnd, W);
});

t.test('old-format records (prev.maxSeq) roll back to the equivalent mark', async (t) => {
  const db = openDatabase(t.testdir());
  t.teardown(() => db.close());
  const records = new SqliteOracleRecords(db);
  const legacy = inputs([{ deviceId: 'd1', highWater: 9, prev: { maxSeq: 7, before: W }, startCursors: cursorAt(7), endCursors: cursorAt(9) } as unknown as RecordedDevice]);
  records.insertIntent({ id: 'F-10000', facilityId: 'F', windowStart: W, windowEnd: 2 * W, complete: true, netGrams: 0n, actualKg: '0', evidenceRoot: '0xab', inputs: legacy });
  records.confirm('F-10000', '0xab', { mintedGrams: 0n, burnedGrams: 0n, deficitGrams: 0n });
  t.same(records.cursor('d1')?.mark, { maxSeq: 9, late: 0 });
  t.same(records.rollbackFrom('F', W), ['F-10000']);
  t.same(records.cursor('d1')?.mark, { maxSeq: 7, late: 0 });
  t.equal(records.cursor('d1')?.windowEnd, W);
});
