/**
 * The summary's rejections: the platform's log read before and after a run (rows of one device,
 * reason and minute counted together), the difference by reason, each reason compared with what the
 * injected faults explain, and the line that names them.
 */
import http from 'node:http';
import t from 'tap';
import { classifyRejections, formatRejections, formatSummary, type FleetSummary } from '../../simulators/progress.ts';
import { rejectionDelta, rejectionLog, stackSettlement } from '../../simulators/register.ts';
import { emptyFaultCounts } from '../../simulators/faults.ts';

t.test('rejections by reason: expected, unexpected, the line that names them', async (t) => {
  const r = classifyRejections({ byReason: { duplicate_conflict: 315, invalid_value: 5 }, truncated: false }, { invalid_value: 5 });
  t.same(r, {
    total: 320,
    byReason: [
      { reason: 'duplicate_conflict', count: 315, expected: 0, unexpected: 315 },
      { reason: 'invalid_value', count: 5, expected: 5, unexpected: 0, fault: 'garbage' },
    ],
    unexpected: 315,
    truncated: false,
  });
  t.equal(formatRejections(r), '320: 315 duplicate_conflict (unexpected), 5 invalid_value (expected: fault garbage)');

  const mixed = classifyRejections({ byReason: { invalid_json: 7, future_ts: 1 }, truncated: true }, { invalid_json: 4, future_ts: 2, invalid_topic: 1 });
  t.equal(mixed.unexpected, 3);
  t.equal(
    formatRejections(mixed),
    'at least 8: 7 invalid_json (4 expected: fault garbage; 3 unexpected), 1 future_ts (expected 2: fault skew), 0 invalid_topic (expected 1: fault spoof)',
  );
  t.equal(formatRejections(classifyRejections({ byReason: {}, truncated: false }, {})), '0');

  const base = {
    devices: 1, facilities: 1, connected: 0, elapsedSeconds: 1, readings: 1, sent: 1, acked: 1, readingsAcked: 1, inFlight: 0, rejected: 320, rate: 0,
    reconnects: 0, connectionErrors: 0, bufferFull: 0, redelivered: 0, refused: 0, faults: emptyFaultCounts(), startedAt: '', stoppedAt: '', unacked: 0,
    statePath: null, windowSeconds: 30, graceSeconds: 5, facilityIds: ['f'], deviceDetails: [],
  };
  const text = formatSummary({ ...base, rejections: r } as FleetSummary);
  t.match(text, /rejected by the platform: 320: 315 duplicate_conflict \(unexpected\), 5 invalid_value \(expected: fault garbage\)/);
  t.match(text, /315 rejections no injected fault explains: see GET \/v1\/facilities\/\{id\}\/rejections/);
  t.match(formatSummary({ ...base, rejected: null, rejections: null } as FleetSummary), /rejected by the platform: unknown \(no --api\)/);
});

t.test('the rejection log read through the gateway API, before and after', async (t) => {
  let items: Record<string, unknown>[] = [];
  let health: unknown = { status: 'ok', backends: {}, settlement: { windowSeconds: 30, graceSeconds: 5 } };
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.url} ${req.headers.authorization}`);
    res.writeHead(req.url === '/v1/facilities/gone/rejections?limit=1000' ? 404 : 200, { 'content-type': 'application/json' });
    if (req.url === '/health') return res.end(JSON.stringify(health));
    res.end(JSON.stringify({ items: req.url === '/v1/facilities/f1/rejections?limit=1000' ? items : [] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const api = { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, key: 'k' };
  const read = rejectionLog(api);

  items = [{ deviceId: 'd1', reason: 'invalid_json', receivedAt: '2026-01-01T00:00:00.000Z', count: 3, payload: 'x' }];
  const before = (await read(['f1', 'f2']))!;
  items = [
    { deviceId: 'd1', reason: 'duplicate_conflict', receivedAt: '2026-01-01T00:01:00.000Z', payload: 'x' },
    { deviceId: 'd1', reason: 'invalid_json', receivedAt: '2026-01-01T00:00:00.000Z', count: 5, payload: 'x' },
  ];
  const after = (await read(['f1', 'f2']))!;
  t.same(rejectionDelta(before, after), { byReason: { duplicate_conflict: 1, invalid_json: 2 }, truncated: false }, 'the rows added and the counts grown since');
  t.ok(seen.every((s) => s.endsWith('Bearer k')), 'with the key');
  t.equal(await read(['f1', 'gone']), undefined, 'a facility that cannot be read: unknown, not zero');

  t.same(await stackSettlement(api), { windowSeconds: 30, graceSeconds: 5 });
  health = { status: 'ok', backends: {} }; // an older gateway
  t.equal(await stackSettlement(api), undefined);
  health = { settlement: { windowSeconds: 'x' } };
  t.equal(await stackSettlement(api), undefined);
});
