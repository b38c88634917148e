/**
 * The fleet against a real MQTT broker (aedes in-process on 127.0.0.1, port 0): QoS 1 publishing with
 * status topics and last will, progress and summary counts, offline buffering and redelivery after a
 * broker restart (no reading lost, same seqs), injected faults that add up to what a platform would
 * refuse, wrong credentials and topic spoofing refused, and clear start-up errors.
 */
import path from 'node:path';
import t, { type Test } from 'tap';
import type { AuthenticateError } from 'aedes';
import { validatePayload } from '../../broker/validate.ts';
import type { RejectReason } from '../../domain/reading.ts';
import { silentLogger } from '../../domain/logger.ts';
import { emptyFaultCounts } from '../../simulators/faults.ts';
import { startFleet } from '../../simulators/fleet.ts';
import { startProgress } from '../../simulators/progress.ts';
import type { SimCredentials } from '../../simulators/plan.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { readingsOf, startBroker, type Received } from './helpers.ts';
import { eventually } from '../helpers/eventually.ts';
import { tmpDir, withTmpDir } from '../helpers/tmp.ts';

function tmpState(t: Test): string {
  return path.join(tmpDir(t, 'sim-fleet-'), 'state.json');
}

/** Every seq 1..last is in the log, and all copies of one seq carry the same bytes. */
function assertComplete(t: Test, log: Received[], deviceId: string, lastSeq: number) {
  const bySeq = new Map<number, Set<string>>();
  for (const r of readingsOf(log, deviceId)) {
    if (!bySeq.has(r.seq)) bySeq.set(r.seq, new Set());
    bySeq.get(r.seq)!.add(JSON.stringify(r.body));
  }
  const missing = [];
  for (let s = 1; s <= lastSeq; s++) if (!bySeq.has(s)) missing.push(s);
  t.same(missing, [], `${deviceId}: every seq 1..${lastSeq} reached the broker`);
  t.ok([...bySeq.values()].every((v) => v.size === 1), `${deviceId}: a seq always carries the same content`);
}

t.test('QoS 1 publishing, status and will, progress line and summary', async (t) => {
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const lines: string[] = [];
  const sink = { isTTY: false, write: (s: string) => lines.push(s) };
  const fleet = await startFleet({
    url: `mqtt://127.0.0.1:${broker.port}`,
    devices: 3,
    rate: 20,
    seed: 'qos',
    statePath: tmpState(t),
    progress: sink,
    progressIntervalMs: 100,
    recordAcks: true,
    logger: silentLogger,
  });
  t.teardown(() => fleet.stop());
  await eventually('60 acks', () => fleet.stats().acked >= 60);
  const live = fleet.stats();
  t.equal(live.connected, 3);
  const s = await fleet.stop();
  // the broker publishes the wills when it notices the sockets closing
  await eventually('wills', () => broker.log.filter((r) => r.topic.endsWith('/status') && r.payload.toString() === 'offline').length === 3);

  t.equal(s.devices, 3);
  t.equal(s.facilities, 1);
  t.equal(s.sent, s.acked, 'every message acknowledged');
  t.equal(s.inFlight, 0);
  t.equal(s.unacked, 0);
  t.equal(s.readings, s.readingsAcked, 'every reading acknowledged');
  t.equal(s.readingsAcked, s.deviceDetails.reduce((n, d) => n + d.readingsAcked, 0));
  for (const d of s.deviceDetails) {
    t.same(d.ackedSeqs, Array.from({ length: d.lastSeq }, (_, i) => i + 1), `${d.deviceId}: seqs 1..${d.lastSeq} acked`);
    assertComplete(t, broker.log, d.deviceId, d.lastSeq);
    const status = broker.log.filter((r) => r.topic === `facilities/${d.facilityId}/devices/${d.deviceId}/status`).map((r) => r.payload.toString());
    t.same(status, ['online', 'offline'], `${d.deviceId}: online on connect, the will when it goes`);
  }
  // QoS 1 on the wire and the client ids
  t.ok(broker.log.every((r) => r.topic.startsWith('facilities/sim-f1/devices/') && r.clientId === r.topic.split('/')[3]), 'clientId = deviceId');

  // progress: one line per interval off a TTY, the last one with the final counts
  t.ok(lines.length >= 2, `${lines.length} progress lines`);
  t.ok(lines.every((l) => l.endsWith('\n') && !l.includes('\r')));
  t.match(lines.at(-1)!, new RegExp(`sent ${s.sent} \\| acked ${s.acked} \\| rejected \\? \\| in flight 0`));
  t.equal(fleet.stats().connected, 0);
  t.equal(await fleet.stop(), s, 'stop is idempotent');
});

t.test('offline buffering and redelivery after the broker restarts: nothing lost, same seqs', async (t) => {
  const log: Received[] = [];
  let broker = await startBroker({ log });
  const port = broker.port;
  t.teardown(() => broker.close());
  const fleet = await startFleet({
    url: `mqtt://127.0.0.1:${port}`,
    devices: 2,
    rate: 25,
    seed: 'restart',
    statePath: tmpState(t),
    reconnectPeriodMs: 100,
    recordAcks: true,
    logger: silentLogger,
  });
  t.teardown(() => fleet.stop());
  const ids = fleet.facilities.flatMap((f) => f.devices.map((d) => d.deviceId));
  const highestSeq = (id: string) => Math.max(0, ...readingsOf(log, id).map((r) => r.seq));
  // Per device, not fleet-wide: each device must have readings on both sides of the restart.
  await eventually('every device published before the restart', () => ids.every((id) => highestSeq(id) >= 10));
  await broker.close();
  await eventually('devices offline', () => fleet.stats().connected === 0);
  const ackedBefore = fleet.stats().acked;
  await eventually('readings buffered while offline', () => fleet.stats().inFlight >= 20);
  t.equal(fleet.stats().acked, ackedBefore, 'nothing acknowledged while the broker is down');
  const buffered = fleet.stats().inFlight;
  broker = await startBroker({ port, log });
  await eventually('every device past seq 20 after the restart', () => fleet.stats().connected === 2 && ids.every((id) => highestSeq(id) > 20));
  await eventually('the buffered readings redelivered and acknowledged', () => fleet.stats().acked >= ackedBefore + buffered);
  const s = await fleet.stop();

  t.ok(s.reconnects >= 2, `${s.reconnects} reconnects`);
  t.equal(s.unacked, 0);
  t.equal(s.sent, s.acked);
  for (const d of s.deviceDetails) {
    t.ok(d.lastSeq > 20, `${d.deviceId}: seq ${d.lastSeq}, past the restart`);
    t.same(d.ackedSeqs, Array.from({ length: d.lastSeq }, (_, i) => i + 1), `${d.deviceId}: all acked`);
    assertComplete(t, log, d.deviceId, d.lastSeq);
  }
});

/** What the platform refuses, from the bytes that reached the broker: validation, then a real SQLite store (the ingest rules). */
async function platformRejections(log: Received[]): Promise<{ rejected: Partial<Record<RejectReason, number>>; duplicates: number; stored: Set<string> }> {
  const rejected: Partial<Record<RejectReason, number>> = {};
  let duplicates = 0;
  const stored = new Set<string>();
  await withTmpDir('mrv-fleet-platform-', async (dir) => {
    const db = openDatabase(dir);
    try {
      const { readings } = openSqliteStores(db);
      for (const r of log) {
        const m = /^facilities\/([^/]+)\/devices\/([^/]+)\/readings$/.exec(r.topic);
        if (!m) continue;
        const v = validatePayload(r.payload, { facilityId: m[1], deviceId: m[2], now: r.at });
        for (const x of v.rejections) rejected[x.reason] = (rejected[x.reason] ?? 0) + 1;
        const outcomes = await readings.commit(v.readings);
        outcomes.forEach((o, i) => {
          if (o.status === 'duplicate') duplicates++;
          else if (o.status === 'rejected') rejected[o.reason] = (rejected[o.reason] ?? 0) + 1;
          else stored.add(`${v.readings[i].deviceId}|${v.readings[i].seq}`);
        });
      }
    } finally {
      db.close();
    }
  });
  return { rejected, duplicates, stored };
}

t.test('injected faults add up to what the platform refuses', async (t) => {
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const fleet = await startFleet({
    url: `mqtt://127.0.0.1:${broker.port}`,
    devices: 4,
    rate: 50,
    seed: 'faults',
    faults: 'drop=0.05,duplicate=0.05,reorder=0.05,late=0.05,garbage=0.05,reset=0.02,skew=0.08',
    windowSeconds: 60,
    graceSeconds: 10,
    statePath: tmpState(t),
    recordAcks: true,
    logger: silentLogger,
  });
  t.teardown(() => fleet.stop());
  await eventually('500 acks', () => fleet.stats().acked >= 500);
  const s = await fleet.stop();
  const f = s.faults;
  for (const k of ['drop', 'duplicate', 'reorder', 'late', 'garbage', 'reset', 'skew'] as const) t.ok(f[k] > 0, `${k} injected ${f[k]} times`);
  t.ok(f.skewFuture > 0);

  const platform = await platformRejections(broker.log);
  t.same(platform.rejected, f.expectedRejections, 'refusals by reason = expected from the injected faults');
  t.equal(platform.duplicates, f.duplicate, 'duplicates');
  t.equal(platform.rejected.register_backwards, undefined, 'no register ever goes backwards');
  const seen = new Set(readingsOf(broker.log).map((r) => `${r.deviceId}|${r.seq}`));
  const never = s.deviceDetails.reduce((n, d) => n + d.lastSeq, 0) - seen.size;
  t.equal(never, f.drop, 'the seqs never sent are exactly the dropped readings');
  const acked = s.deviceDetails.flatMap((d) => d.ackedSeqs!.map((q) => `${d.deviceId}|${q}`));
  t.equal(acked.length, s.readingsAcked);
  t.same(acked.filter((k) => !platform.stored.has(k)), [], 'every acknowledged reading counted as stored-to-be is stored');
  t.equal(platform.stored.size, s.readingsAcked, 'and nothing else is stored');
});

t.test('wrong credentials are refused, spoofed topics are refused, nothing is lost', async (t) => {
  const creds: SimCredentials[] = [
    { facilityId: 'acme', deviceId: 'acme-meter', password: 'pw-acme-meter' },
    { facilityId: 'acme', deviceId: 'acme-stack', password: 'pw-acme-stack', kind: 'cems' },
  ];
  const owner = new Map(creds.map((c) => [c.deviceId, c.facilityId]));
  let spoofs = 0;
  let badLogins = 0;
  const broker = await startBroker({
    aedes: {
      authenticate: (client, username, password, done) => {
        if (username && client.id === username && password?.toString() === `pw-${username}`) return done(null, true);
        badLogins++;
        const err = new Error('bad credentials') as AuthenticateError;
        err.returnCode = 4;
        done(err, false);
      },
      authorizePublish: (client, packet, done) => {
        const prefix = `facilities/${owner.get(client?.id ?? '')}/devices/${client?.id}/`;
        if (packet.topic.startsWith(prefix)) return done(null);
        spoofs++;
        done(new Error('not your topic'));
      },
    },
  });
  t.teardown(() => broker.close());
  const fleet = await startFleet({
    url: `mqtt://127.0.0.1:${broker.port}`,
    credentials: creds,
    rate: 20,
    seed: 'auth',
    faults: 'badauth=2,spoof=1',
    reconnectPeriodMs: 100,
    statePath: tmpState(t),
    recordAcks: true,
    logger: silentLogger,
  });
  t.teardown(() => fleet.stop());
  t.same(
    fleet.facilities.map((f) => f.devices.map((d) => [d.deviceId, d.kind])),
    [[['acme-meter', 'grid'], ['acme-stack', 'cems']]],
    'kinds from the list, or from the profile',
  );
  await eventually('network faults', () => fleet.stats().faults.spoof.attempted === 1 && fleet.stats().faults.badauth.attempted === 2);
  await eventually('the spoof reached the broker and the device came back', () => spoofs === 1 && fleet.stats().connected === 2);
  await eventually('more readings', () => fleet.stats().acked >= 40);
  const s = await fleet.stop();
  t.same(s.faults.badauth, { attempted: 2, refused: 2, accepted: 0, failed: 0 });
  t.equal(badLogins, 2);
  t.same(s.faults.spoof, { attempted: 1, sent: 1, failed: 0 });
  t.same(s.faults.expectedRejections, { invalid_topic: 1 }, 'the platform logs a refused publish as invalid_topic');
  t.equal(spoofs, 1, 'the broker saw and refused one spoofed publish');
  t.notOk(broker.log.some((r) => r.topic.includes('acme-stack/readings') && r.clientId === 'acme-meter'), 'nothing published on another device topic');
  for (const d of s.deviceDetails) {
    t.same(d.ackedSeqs, Array.from({ length: d.lastSeq }, (_, i) => i + 1), `${d.deviceId}: all acked`);
    assertComplete(t, broker.log, d.deviceId, d.lastSeq);
  }
});

t.test('clear errors: refused credentials, unreachable broker, bad URL', async (t) => {
  const broker = await startBroker({
    aedes: {
      authenticate: (_client, _u, _p, done) => {
        const err = new Error('no') as AuthenticateError;
        err.returnCode = 4;
        done(err, false);
      },
    },
  });
  t.teardown(() => broker.close());
  const statePath = tmpState(t);
  await t.rejects(
    startFleet({ url: `mqtt://127.0.0.1:${broker.port}`, credentials: [{ facilityId: 'f', deviceId: 'd', password: 'x' }], statePath, logger: silentLogger }),
    { code: 'SIM_CREDENTIALS_REFUSED', message: /refused the credentials of device d: Connection refused: Bad username or password/ },
  );

  // a port nobody listens on
  const gone = await startBroker();
  const port = gone.port;
  await gone.close();
  await t.rejects(startFleet({ url: `mqtt://127.0.0.1:${port}`, devices: 2, statePath, reconnectPeriodMs: 100, logger: silentLogger }), {
    code: 'SIM_BROKER_UNREACHABLE',
    message: new RegExp(`cannot reach the MQTT broker at mqtt://127.0.0.1:${port}: ECONNREFUSED`),
  });

  await t.rejects(startFleet({ url: 'http://127.0.0.1:1', statePath, logger: silentLogger }), { code: 'SIM_BAD_URL' });
  await t.rejects(startFleet({ url: 'not a url', statePath, logger: silentLogger }), { code: 'SIM_BAD_URL' });
  await t.rejects(startFleet({ url: 'mqtt://127.0.0.1:1', rate: 0, statePath, logger: silentLogger }), { code: 'SIM_USAGE' });
});

t.test('progress on a TTY rewrites one line in place', async (t) => {
  const writes: string[] = [];
  let acked = 0;
  const stats = () => ({
    devices: 2, facilities: 1, connected: 2, elapsedSeconds: 1, readings: acked, sent: acked + 1, acked, readingsAcked: acked,
    inFlight: 1, rejected: 3, rate: 12.5, reconnects: 0, connectionErrors: 0, bufferFull: 0, redelivered: 0, refused: 0,
    faults: { ...emptyFaultCounts(), drop: 2, skew: 4, skewFuture: 1, badauth: { attempted: 1, refused: 1, accepted: 0, failed: 0 } },
  });
  const p = startProgress({ isTTY: true, write: (s) => writes.push(s) }, stats, 20);
  await eventually('two updates', () => writes.length >= 2);
  acked = 9;
  p.stop();
  t.ok(writes.slice(0, -1).every((w) => w.startsWith('\r\x1b[2K') && !w.includes('\n')), 'carriage return + clear line, no newline');
  t.equal(writes.at(-1), '\n', 'the line is closed at the end');
  t.equal(writes.at(-2), '\r\x1b[2K2/2 dev | sent 10 | acked 9 | rejected 3 | in flight 1 | 12.5 msg/s | faults: drop 2 skew 4 (future 1) badauth 1/1 refused');
});
