/**
 * Points that do not decode (a field missing, so InfluxDB returns null; a value that is no decimal),
 * as two uncoordinated writers or another program can leave them, against a real influxd: every read
 * of the store that meets one rejects with STORE_UNAVAILABLE naming the device and seq (never a plain
 * Error, never a reading with value "null"), and the store goes on serving the other devices.
 */
import t from 'tap';
import { isError, errors } from '../../domain/errors.ts';
import { silentLogger } from '../../domain/logger.ts';
import { encodeLine } from '../../store/influx/line.ts';
import { readingTime } from '../../store/influx/schema.ts';
import { openInfluxStore } from '../../store/influx/store.ts';
import type { CommitOutcome } from '../../store/types.ts';
import { requireInfluxd, startInfluxd, type Influxd } from '../helpers/influxd.ts';
import { FAC, T0, reading } from '../helpers/reading-store-contract.ts';

const statuses = (o: CommitOutcome[]) => o.map((x) => (x.status === 'rejected' ? x.reason : x.status));

if (requireInfluxd(t)) {
  const ix: Influxd = await startInfluxd();
  t.teardown(() => ix.close());
  const db = 'undecodable';
  await ix.createDatabase(db);
  const store = openInfluxStore({ url: ix.url, database: db, logger: silentLogger, flushMs: 2 });
  t.teardown(() => store.close());

  t.test('setup: good points from the store, malformed ones written directly', async (t) => {
    const write = async (lines: string[]) => {
      const res = await fetch(`${ix.url}/write?db=${db}&precision=ns`, { method: 'POST', body: lines.join('\n') });
      t.equal(res.status, 204, 'malformed points written over the 1.x /write API');
    };
    const tags = (device: string) => ({ facility: FAC, device, metric: 'electricity_import' });

    // dev-a: a good device. dev-c: good seqs 1, 5, 9 from the store, then a point at seq 3 without its
    // value (in both measurements), as a racing writer can leave it. dev-bad: its latest point has a value
    // that is no decimal, and its mark point has no seq.
    const setup = openInfluxStore({ url: ix.url, database: db, logger: silentLogger, flushMs: 2 });
    t.same(
      statuses(await setup.commit([reading('dev-a', 1, T0 + 1000, '1'), reading('dev-c', 1, T0 + 1000, '1'), reading('dev-c', 5, T0 + 5000, '5'), reading('dev-c', 9, T0 + 9000, '9')])),
      ['stored', 'stored', 'stored', 'stored'],
    );
    await setup.close();
    await write([
      encodeLine('reading_seq', tags('dev-c'), { ts: BigInt(T0 + 3000), unit: 'kWh', reset: false, received: BigInt(T0 + 3050) }, 3n),
      encodeLine('reading', tags('dev-c'), { seq: 3n, unit: 'kWh', reset: false, received: BigInt(T0 + 3050) }, readingTime(T0 + 3000, 3)),
      encodeLine('reading_seq', tags('dev-bad'), { ts: BigInt(T0 + 2000), value: 'null', unit: 'kWh', reset: false, received: BigInt(T0 + 2050) }, 2n),
      encodeLine('reading_hw', { device: 'dev-bad' }, { late: 0n }, 2n),
    ]);

    // Loads dev-c's state (its heads are good) so that later commits look seqs up on the server.
    t.same(statuses(await store.commit([reading('dev-c', 10, T0 + 10_000, '10')])), ['stored']);
  });

  const unavailable = (device: string, seq: number) => (err: unknown) =>
    isError(err, errors.STORE_UNAVAILABLE) && (err as Error).message.includes(device) && (err as Error).message.includes(`seq ${seq}`);
  const mark = { maxSeq: 10, late: 10 };
  const cases: [string, () => Promise<unknown>, string, number][] = [
    ['commit: a device state loaded with an undecodable head', () => store.commit([reading('dev-bad', 3, T0 + 3000, '3')]), 'dev-bad', 2],
    ['commit: the stored reading with the same seq', () => store.commit([reading('dev-c', 3, T0 + 3000, '3')]), 'dev-c', 3],
    ['commit: the neighbour below', () => store.commit([reading('dev-c', 4, T0 + 4000, '4')]), 'dev-c', 3],
    ['commit: the neighbour above', () => store.commit([reading('dev-c', 2, T0 + 2000, '2')]), 'dev-c', 3],
    ['get', () => store.get('dev-c', 3), 'dev-c', 3],
    ['consume', () => store.consume({ deviceId: 'dev-c', mark, before: T0 + 60_000 }), 'dev-c', 3],
    ['list', () => store.list({ facilityId: FAC, deviceId: 'dev-c' }), 'dev-c', 3],
    ['hasReading', () => store.hasReading('dev-c', T0, T0 + 60_000, mark), 'dev-c', 3],
    ['coverage', () => store.coverage({ deviceId: 'dev-c', start: T0 + 2000, end: T0 + 6000, mark }), 'dev-c', 3],
    ['marks', () => store.marks(['dev-a', 'dev-bad']), 'dev-bad', 2],
  ];
  for (const [name, call, device, seq] of cases) {
    t.test(name, async (t) => {
      let failure: unknown;
      const value = await call().catch((err: unknown) => {
        failure = err;
        return undefined;
      });
      t.ok(failure, `rejects (resolved with ${JSON.stringify(value)?.slice(0, 200)})`);
      t.ok(unavailable(device, seq)(failure), `STORE_UNAVAILABLE naming ${device} and seq ${seq}: ${String((failure as Error)?.message ?? failure)}`);
      t.equal((failure as { statusCode?: number })?.statusCode, 503);
    });
  }

  t.test('the store and the process go on: the good device is served', async (t) => {
    t.same(statuses(await store.commit([reading('dev-a', 2, T0 + 2000, '2')])), ['stored']);
    t.same((await store.marks(['dev-a'])).get('dev-a'), { maxSeq: 2, late: 0 });
    t.same((await store.list({ facilityId: FAC, deviceId: 'dev-a' })).map((r) => r.value), ['2', '1']);
    t.equal((await store.get('dev-c', 5))?.value, '5', 'good points of the same device still read');
  });
}
