/**
 * Durability across SIGKILL: the broker runs as a child process (`tsx broker/main.ts`, DATA_DIR,
 * MQTT_PORT=0). N QoS 1 readings are published; the process is SIGKILLed right after the last PUBACK,
 * restarted on the same DATA_DIR, and every acknowledged reading is there exactly once. Redelivering the
 * same seqs then stores nothing twice.
 */
import t from 'tap';
import { connect, makeFleet, startBrokerProcess, topic, type T } from './helpers.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { MAX_LIST_LIMIT } from '../../store/types.ts';
import { tmpDir } from '../helpers/tmp.ts';

/** One process (node with the tsx loader), so SIGKILL hits the broker itself, not a tsx wrapper. */
const startChild = (t: T, dataDir: string) => startBrokerProcess(t, { DATA_DIR: dataDir });

function payloads(n: number): { payload: string; seqs: number[] }[] {
  const out: { payload: string; seqs: number[] }[] = [];
  const ts0 = Date.now() - 3_600_000;
  let seq = 0;
  const one = () => {
    seq++;
    // 0.001 kWh per ms (3,600 kW): plausible under the default capacity.
    return { seq, ts: ts0 + seq, metric: 'electricity_import', value: 1000 + seq / 1000, unit: 'kWh' };
  };
  while (seq < n) {
    if (out.length % 4 === 3 && n - seq >= 10) {
      const arr = Array.from({ length: 10 }, one);
      out.push({ payload: JSON.stringify(arr), seqs: arr.map((r) => r.seq) });
    } else {
      const r = one();
      out.push({ payload: JSON.stringify(r), seqs: [r.seq] });
    }
  }
  return out;
}

t.test('SIGKILL right after the last PUBACK loses nothing; redelivery stores nothing twice', async (t) => {
  const dir = tmpDir(t, 'mrv-durable-');
  // Register the fleet, then close the file before the broker process opens it.
  const pw = (() => {
    const sub = { teardown: (_fn: () => unknown) => {} };
    const fleet = makeFleet(sub, dir);
    const p = fleet.passwords.d1;
    fleet.db.close();
    return p;
  })();

  // Below the store's list cap (1000), so the exact counts below would see any extra row.
  const N = 600;
  const msgs = payloads(N);
  const first = await startChild(t, dir);
  const c = await connect(t, first.port, 'd1', pw, { reconnectPeriod: 0 });
  let acked = 0;
  await new Promise<void>((resolve, reject) => {
    for (const m of msgs) {
      c.publish(topic('F1', 'd1'), m.payload, { qos: 1 }, (err) => {
        if (err) return reject(err);
        if (++acked === msgs.length) {
          first.child.kill('SIGKILL'); // right after the last PUBACK
          resolve();
        }
      });
    }
  });
  await new Promise((r) => (first.child.exitCode !== null || first.child.signalCode !== null ? r(null) : first.child.once('exit', r)));
  t.equal(first.child.signalCode, 'SIGKILL', 'the broker was killed');
  c.end(true);

  const second = await startChild(t, dir);
  const check = () => {
    const db = openDatabase(dir);
    try {
      const { readings } = openSqliteStores(db);
      return readings.list({ facilityId: 'F1', deviceId: 'd1', limit: MAX_LIST_LIMIT });
    } finally {
      db.close();
    }
  };
  const stored = await check();
  t.ok(MAX_LIST_LIMIT > N, 'the query can see more rows than expected');
  t.equal(stored.length, N, `all ${N} acknowledged readings are stored`);
  t.same(
    stored.map((r) => r.seq).sort((a, b) => a - b),
    Array.from({ length: N }, (_, i) => i + 1),
    'each seq exactly once',
  );

  // Redeliver everything to the restarted broker: acked again, nothing stored twice.
  const c2 = await connect(t, second.port, 'd1', pw, { reconnectPeriod: 0 });
  await Promise.all(msgs.map((m) => c2.publishAsync(topic('F1', 'd1'), m.payload, { qos: 1 })));
  const after = await check();
  t.equal(after.length, N, 'redelivery stored nothing twice');
  const rej = (() => {
    const db = openDatabase(dir);
    try {
      return openSqliteStores(db).registry.listRejections('F1', 10);
    } finally {
      db.close();
    }
  })();
  t.equal(rej.length, 0, 'redelivered duplicates are not rejections');
  await c2.endAsync();
  second.child.kill('SIGTERM');
  await new Promise((r) => second.child.once('exit', r));
  t.equal(second.child.exitCode, 0, 'SIGTERM stops the broker cleanly');
});
