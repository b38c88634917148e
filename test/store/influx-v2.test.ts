/**
 * The exact HTTP requests of the InfluxDB store, against a small local HTTP server that records them.
 * No InfluxDB 2.x server exists on this machine: this checks the 2.x request shape (write path and
 * parameters, Token header, gzip body, line protocol, the v1-compatible InfluxQL read), not a real
 * 2.x server's behaviour. The 1.x shape (db/rp, Basic auth) is checked the same way, and retry /
 * no-retry by status.
 */
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import { openInfluxStore, type InfluxStoreOptions } from '../../store/influx/store.ts';
import { BY_SEQ_COLUMNS } from '../../store/influx/schema.ts';
import { T0, reading } from '../helpers/reading-store-contract.ts';

interface Recorded {
  method: string;
  path: string;
  params: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A fake server: records requests; `writeStatus` decides each write's answer (default 204). */
async function fakeInflux(t: Test, writeStatus: () => number = () => 204) {
  const requests: Recorded[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://x');
      const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw).toString() : raw.toString();
      requests.push({ method: req.method ?? '', path: url.pathname, params: url.searchParams, headers: req.headers, body });
      if (url.pathname === '/query') {
        const qtext = url.searchParams.get('q') ?? '';
        const n = qtext.split('; ').length;
        const results = Array.from({ length: n }, (_, i) => ({ statement_id: i }));
        if (qtext.includes('"reading_hw"') && qtext.includes('GROUP BY "device"')) {
          results[0] = { statement_id: 0, series: [{ name: 'reading_hw', tags: { device: 'dev-a' }, columns: ['time', 'seq', 'late'], values: [[7, 7, 2]] }] } as never;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ results }));
        return;
      }
      if (url.pathname === '/ping') return void res.writeHead(204).end();
      const status = writeStatus();
      res.writeHead(status, { 'content-type': 'application/json' }).end(status >= 300 ? JSON.stringify({ code: 'x', message: `status ${status}` }) : undefined);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const addr = server.address() as { port: number };
  return { url: `http://127.0.0.1:${addr.port}`, requests };
}

const V2 = { token: 'secret-token', org: 'my-org', bucket: 'my-bucket' };
const r7 = reading('dev-a', 7, T0 + 5, '81234.5');
const READING_LINE = `reading,device=dev-a,facility=fac-1,metric=electricity_import seq=7i,value="81234.5",unit="kWh",reset=false,received=${T0 + 55}i,value_f=81234.5 ${BigInt(T0 + 5) * 1_000_000n + 7n}`;
const BY_SEQ_LINE = `reading_seq,device=dev-a,facility=fac-1,metric=electricity_import ts=${T0 + 5}i,value="81234.5",unit="kWh",reset=false,received=${T0 + 55}i 7`;
const HW_LINE = 'reading_hw,device=dev-a seq=7i,late=0i 7';

function open(t: Test, opts: Partial<InfluxStoreOptions> & { url: string }) {
  const store = openInfluxStore({ logger: silentLogger, flushMs: 1, retryBaseMs: 10, retryMaxDelayMs: 20, ...opts });
  t.teardown(() => store.close());
  return store;
}

t.test('2.x: write and read request shape (fake server, not a real 2.x)', async (t) => {
  const fake = await fakeInflux(t);
  const store = open(t, { url: fake.url + '/', ...V2 });
  t.same(await store.commit([r7]), [{ status: 'stored' }]);

  const reads = fake.requests.filter((r) => r.path === '/query');
  const writes = fake.requests.filter((r) => r.path !== '/query');
  t.equal(reads.length, 1, 'one read: the device state (highest seq, registers, high-water)');
  t.equal(reads[0].method, 'GET');
  t.same(Object.fromEntries(reads[0].params), { db: 'my-bucket', epoch: 'ns', q: reads[0].params.get('q') }, 'v1-compatible /query on the bucket (virtual DBRP mapping)');
  t.equal(reads[0].headers.authorization, 'Token secret-token');
  t.equal(
    reads[0].params.get('q'),
    [
      `SELECT ${BY_SEQ_COLUMNS} FROM "reading_seq" WHERE "device" = 'dev-a' GROUP BY "metric" ORDER BY time DESC LIMIT 1`,
      `SELECT first("value") AS "value" FROM "reading_seq" WHERE "device" = 'dev-a' GROUP BY "metric"`,
      `SELECT "seq", "late" FROM "reading_hw" WHERE "device" = 'dev-a' ORDER BY time DESC LIMIT 1`,
      `SELECT last("seq") AS "seq" FROM "reading_late" WHERE "device" = 'dev-a'`,
    ].join('; '),
  );

  t.equal(writes.length, 2, 'the readings, then the mark point once they are acknowledged');
  for (const w of writes) {
    t.equal(w.method, 'POST');
    t.equal(w.path, '/api/v2/write');
    t.same(Object.fromEntries(w.params), { org: 'my-org', bucket: 'my-bucket', precision: 'ns' });
    t.equal(w.headers.authorization, 'Token secret-token');
    t.equal(w.headers['content-encoding'], 'gzip');
    t.match(w.headers['content-type'], /^text\/plain/);
  }
  t.same(writes[0].body.split('\n'), [READING_LINE, BY_SEQ_LINE], 'line protocol of one reading');
  t.same(writes[1].body.split('\n'), [HW_LINE]);

  const marks = await store.marks(['dev-a', 'dev-b']);
  t.same([...marks], [['dev-a', { maxSeq: 7, late: 2 }]], 'marks parsed from the GROUP BY answer');
  const last = fake.requests.at(-1) as Recorded;
  t.equal(last.params.get('q'), `SELECT "seq", "late" FROM "reading_hw" WHERE "device" = 'dev-a' OR "device" = 'dev-b' GROUP BY "device" ORDER BY time DESC LIMIT 1`);
  t.equal(await store.ping(), true);
});

t.test('1.x: /write and /query with db, rp and Basic auth, gzip off', async (t) => {
  const fake = await fakeInflux(t);
  const store = open(t, { url: fake.url, database: 'mrv', retentionPolicy: 'forever', username: 'ingest', password: 'pw', gzip: false });
  await store.commit([r7]);
  const [read, write] = fake.requests;
  t.equal(read.path, '/query');
  t.same(Object.fromEntries(read.params), { db: 'mrv', epoch: 'ns', rp: 'forever', q: read.params.get('q') });
  t.equal(write.path, '/write');
  t.same(Object.fromEntries(write.params), { db: 'mrv', precision: 'ns', rp: 'forever' });
  t.equal(write.headers.authorization, 'Basic ' + Buffer.from('ingest:pw').toString('base64'));
  t.equal(write.headers['content-encoding'], undefined);
  t.same(write.body.split('\n'), [READING_LINE, BY_SEQ_LINE]);
});

t.test('5xx is retried with the same body until acknowledged; the commit waits', async (t) => {
  let n = 0;
  const fake = await fakeInflux(t, () => (++n <= 2 ? 503 : 204));
  const store = open(t, { url: fake.url, ...V2 });
  t.same(await store.commit([r7]), [{ status: 'stored' }]);
  const writes = fake.requests.filter((r) => r.path === '/api/v2/write');
  t.equal(writes.length, 4, 'two 503s, the readings, the high-water point');
  t.equal(writes[0].body, writes[2].body, 'the retry resends the same lines');
  t.equal(store.stats().failedAttempts, 2);
});

t.test('a 4xx fails at once, without retry, and the commit rejects', async (t) => {
  const fake = await fakeInflux(t, () => 400);
  const store = open(t, { url: fake.url, ...V2, maxRetryMs: 60_000 });
  await t.rejects(store.commit([r7]), { code: 'STORE_UNAVAILABLE', message: /400/ });
  t.equal(fake.requests.filter((r) => r.path === '/api/v2/write').length, 1, 'not retried');
});

t.test('configuration errors', async (t) => {
  t.throws(() => openInfluxStore({ url: 'http://127.0.0.1:1', bucket: 'b', logger: silentLogger }), { code: 'CONFIG_INVALID' }, 'bucket without org/token');
  t.throws(() => openInfluxStore({ url: 'http://127.0.0.1:1', logger: silentLogger }), { code: 'CONFIG_INVALID' }, 'neither bucket nor database');
  t.throws(() => openInfluxStore({ url: 'not a url', database: 'x', logger: silentLogger }), { code: 'CONFIG_INVALID' });
});
