/**
 * Continuity across simulator restarts: a device resumed from its saved state produces exactly the
 * bytes an uninterrupted one would; a fleet restarted on the same state file continues its seqs and
 * registers; readings left unacknowledged are saved and redelivered with the same seq; an unclean
 * stop makes seqs skip ahead; a corrupt state file is a clear error; the state file is locked by one
 * simulator at a time.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { silentLogger } from '../../domain/logger.ts';
import { DeviceSim, type DeviceSpec } from '../../simulators/device.ts';
import { parseFaults } from '../../simulators/faults.ts';
import { startFleet } from '../../simulators/fleet.ts';
import { PROFILES, countKinds } from '../../simulators/profiles.ts';
import { loadState, lockState, saveState } from '../../simulators/state.ts';
import { readingsOf, startBroker, type Received } from './helpers.ts';
import { eventually } from '../helpers/eventually.ts';
import { tmpDir } from '../helpers/tmp.ts';


/** Register values per device and metric in seq order never decrease (no resets in these runs). */
function registersMonotone(log: Received[]): string[] {
  const problems: string[] = [];
  const last = new Map<string, number>();
  const rows = readingsOf(log).sort((a, b) => (a.deviceId === b.deviceId ? a.seq - b.seq : a.deviceId < b.deviceId ? -1 : 1));
  const toBase: Record<string, number> = { Wh: 1, kWh: 1e3, MWh: 1e6, m3: 1 };
  for (const r of rows) {
    const b = r.body as { metric: string; value: number; unit: string };
    if (b.metric === 'co2_direct') continue;
    const key = `${r.deviceId}|${b.metric}`;
    const v = b.value * toBase[b.unit];
    if (v + 1e-6 < (last.get(key) ?? -Infinity)) problems.push(`${key} seq ${r.seq}: ${last.get(key)} -> ${v}`);
    last.set(key, v);
  }
  return problems;
}

t.test('a device resumed from its state continues byte for byte', async (t) => {
  const spec: DeviceSpec = {
    facilityId: 'f1',
    deviceId: 'f1-grid',
    kind: 'grid',
    index: 0,
    profile: PROFILES.efficient,
    facilitySeed: 11,
    facilityKinds: countKinds(['grid', 'solar']),
  };
  const opts = { seed: 'cont', faults: parseFaults('drop=0.1,duplicate=0.1,late=0.1,garbage=0.1,reset=0.05,skew=0.1') };
  const T0 = Date.UTC(2026, 10, 23, 1, 0, 0);
  const whole = new DeviceSim(spec, opts);
  const first = new DeviceSim(spec, opts);
  const bytes = (s: DeviceSim, i: number) => s.tick(T0 + i * 5000).messages.map((m) => m.payload.toString('base64')).join(',');
  const expected: string[] = [];
  const got: string[] = [];
  for (let i = 0; i < 200; i++) expected.push(bytes(whole, i));
  for (let i = 0; i < 100; i++) got.push(bytes(first, i));
  const saved = JSON.parse(JSON.stringify(first.state())); // through JSON, as in the file
  const resumed = new DeviceSim(spec, opts, saved);
  t.equal(resumed.lastSeq, first.lastSeq);
  for (let i = 100; i < 200; i++) got.push(bytes(resumed, i));
  t.ok(got.join('\n') === expected.join('\n'), 'same bytes as a device that never stopped');
  t.ok(whole.lastSeq > 300);
});

t.test('a fleet restarted on its state file continues seqs and registers; unacknowledged readings are redelivered', async (t) => {
  const dir = tmpDir(t, 'sim-state-');
  const statePath = path.join(dir, 'sim.json');
  const log: Received[] = [];
  let broker = await startBroker({ log });
  const port = broker.port;
  t.teardown(() => broker.close());
  const url = `mqtt://127.0.0.1:${port}`;
  const common = { url, devices: 3, rate: 25, seed: 'st', statePath, reconnectPeriodMs: 100, recordAcks: true, logger: silentLogger };

  // run 1: clean stop
  const run1 = await startFleet(common);
  t.teardown(() => run1.stop());
  await eventually('run 1', () => run1.stats().acked >= 30);
  const s1 = await run1.stop();
  const st1 = loadState(statePath)!;
  t.equal(st1.clean, true);
  for (const d of s1.deviceDetails) t.equal(st1.devices[d.deviceId].seq, d.lastSeq, `${d.deviceId}: last seq saved`);
  t.same(st1.pending, {});

  // run 2: the broker goes away; stop with readings unacknowledged
  const run2 = await startFleet(common);
  t.teardown(() => run2.stop());
  await eventually('run 2', () => run2.stats().acked >= 20);
  t.equal(run2.stats().redelivered, 0);
  await broker.close();
  await eventually('readings buffered', () => run2.stats().inFlight >= 10);
  const s2 = await run2.stop();
  t.ok(s2.unacked >= 10, `${s2.unacked} unacknowledged at stop`);
  const st2 = loadState(statePath)!;
  const pendingSeqs = Object.values(st2.pending).flatMap((list) => list.flatMap((p) => p.seqs));
  t.ok(pendingSeqs.length >= s2.unacked, 'kept in the state file');
  const firstRun2 = Math.min(...readingsOf(log).filter((r) => r.seq > s1.deviceDetails[0].lastSeq && r.deviceId === s1.deviceDetails[0].deviceId).map((r) => r.seq));
  t.equal(firstRun2, s1.deviceDetails[0].lastSeq + 1, 'run 2 went on from the next seq');

  // run 3: broker back; the saved readings go first, with their seq
  broker = await startBroker({ port, log });
  const before = log.length;
  const run3 = await startFleet(common);
  t.teardown(() => run3.stop());
  t.equal(run3.stats().redelivered, pendingSeqs.length);
  await eventually('run 3', () => run3.stats().inFlight === 0 && run3.stats().acked > pendingSeqs.length + 20);
  const s3 = await run3.stop();
  const redelivered = readingsOf(log.slice(before)).map((r) => `${r.deviceId}|${r.seq}`);
  for (const d of s3.deviceDetails) {
    const mine = Object.entries(st2.pending).filter(([id]) => id === d.deviceId).flatMap(([, l]) => l.flatMap((p) => p.seqs));
    const order = redelivered.filter((k) => k.startsWith(`${d.deviceId}|`)).map((k) => Number(k.split('|')[1]));
    t.same(order.slice(0, mine.length), mine, `${d.deviceId}: saved readings sent first, same seqs`);
    const all = new Set(readingsOf(log, d.deviceId).map((r) => r.seq));
    const missing = [];
    for (let s = 1; s <= d.lastSeq; s++) if (!all.has(s)) missing.push(s);
    t.same(missing, [], `${d.deviceId}: seqs 1..${d.lastSeq} over three runs, none lost`);
  }
  t.equal(s3.unacked, 0);
  t.same(loadState(statePath)!.pending, {});
  t.same(registersMonotone(log), [], 'registers continue across restarts, never backwards');
});

t.test('an unclean stop makes seqs skip ahead; a corrupt file is a clear error', async (t) => {
  const dir = tmpDir(t, 'sim-state-');
  const statePath = path.join(dir, 'sim.json');
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const common = { url: `mqtt://127.0.0.1:${broker.port}`, devices: 1, rate: 20, seed: 'u', statePath, logger: silentLogger };
  const run1 = await startFleet(common);
  t.teardown(() => run1.stop());
  await eventually('run 1', () => run1.stats().acked >= 5);
  const s1 = await run1.stop();
  const st = loadState(statePath)!;
  saveState(statePath, { ...st, clean: false }); // as if killed
  const run2 = await startFleet(common);
  t.teardown(() => run2.stop());
  await eventually('run 2', () => run2.stats().acked >= 3);
  await run2.stop();
  const seqs = readingsOf(broker.log).map((r) => r.seq);
  const next = seqs.find((s) => s > s1.deviceDetails[0].lastSeq)!;
  t.ok(next >= s1.deviceDetails[0].lastSeq + 1000, `skipped from ${s1.deviceDetails[0].lastSeq} to ${next}`);

  fs.writeFileSync(statePath, '{"version": 1, "devic');
  await t.rejects(startFleet(common), { code: 'SIM_STATE_INVALID', message: /sim\.json is unusable: not JSON/ });
  fs.writeFileSync(statePath, '{"version": 7}');
  await t.rejects(startFleet(common), { code: 'SIM_STATE_INVALID', message: /not a version 1 simulator state/ });
});

t.test('the state lock: one holder at a time, released at stop and on a failed start, stale locks taken over', async (t) => {
  const dir = tmpDir(t, 'sim-state-');
  const statePath = path.join(dir, 'sim.json');
  const lockFile = `${statePath}.lock`;
  const broker = await startBroker();
  t.teardown(() => broker.close());
  const common = { url: `mqtt://127.0.0.1:${broker.port}`, devices: 1, rate: 5, seed: 'lock', statePath, logger: silentLogger };

  const run1 = await startFleet(common);
  t.teardown(() => run1.stop());
  t.match(JSON.parse(fs.readFileSync(lockFile, 'utf8')), { pid: process.pid, host: os.hostname() });
  await t.rejects(startFleet(common), { code: 'SIM_STATE_LOCKED', message: new RegExp(`sim\\.json is in use by another simulator \\(pid ${process.pid} on this host`) });
  const other = await startFleet({ ...common, statePath: path.join(dir, 'other.json') });
  t.teardown(() => other.stop());
  await other.stop();
  await run1.stop();
  t.notOk(fs.existsSync(lockFile), 'released at stop');

  // a failed start releases it too
  await t.rejects(startFleet({ ...common, credentialsFile: path.join(dir, 'missing.json') }), { code: 'SIM_USAGE' });
  t.notOk(fs.existsSync(lockFile), 'released after a failed start');

  // stale: the holder is gone, or its pid now belongs to another process (start time differs)
  const lock = lockState(statePath);
  const mine = JSON.parse(fs.readFileSync(lockFile, 'utf8'));
  t.throws(() => lockState(statePath), { code: 'SIM_STATE_LOCKED' });
  t.ok(mine.procStart, 'the start time is recorded (Linux /proc)');
  fs.writeFileSync(lockFile, JSON.stringify({ ...mine, procStart: '1', nonce: 'reused' }));
  const stale: string[] = [];
  const taken = lockState(statePath, (h) => stale.push(h));
  t.match(stale, [new RegExp(`pid ${process.pid} on this host`)], 'a reused pid (another start time) is stale');
  lock.release(); // not its lock any more: must leave the new holder's in place
  t.ok(fs.existsSync(lockFile), 'a release never removes a lock taken over by another');
  taken.release();
  t.notOk(fs.existsSync(lockFile));

  fs.writeFileSync(lockFile, JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname(), since: 'x', nonce: 'dead' }));
  const afterDead = lockState(statePath);
  afterDead.release();
  fs.writeFileSync(lockFile, JSON.stringify({ pid: 1, host: 'elsewhere.example', since: 'x', nonce: 'remote' }));
  t.throws(() => lockState(statePath), { code: 'SIM_STATE_LOCKED', message: /pid 1 on host elsewhere\.example/ }, 'another host: cannot tell, refused');
  fs.writeFileSync(lockFile, '');
  t.throws(() => lockState(statePath), { code: 'SIM_STATE_LOCKED', message: /lock file being written/ }, 'an empty fresh lock is a holder writing it');
  const old = new Date(Date.now() - 60_000);
  fs.utimesSync(lockFile, old, old);
  lockState(statePath).release();
  t.notOk(fs.existsSync(lockFile), 'an empty old lock is stale');
  t.same(fs.readdirSync(dir).filter((f) => f.includes('.lock')), [], 'nothing left aside');
});
