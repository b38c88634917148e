/**
 * End to end over real sockets: the whole stack (anvil chain, SQLite, aedes broker, oracle, gateway)
 * on free ports, a seeded simulated fleet with faults publishing for several windows; then for every
 * facility the chain's totals, every settlement's verification and an independent recomputation
 * of every net from the stored readings; duplicates, garbage, bad signatures, bad credentials and
 * spoofed topics refused and counted; every stored reading signed; no acknowledged reading missing.
 */
import path from 'node:path';
import t from 'tap';
import { startFleet } from '../../simulators/fleet.ts';
import { ADMIN_KEY, GRACE_SECONDS, WINDOW_SECONDS, api, checkFacility, runFleetFor, start, tempDataDir, waitSettledThrough } from './helpers.ts';

function metric(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels && !rest.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

t.test('a seeded fleet with faults, settled for several windows, checks out end to end', async (t) => {
  const dataDir = tempDataDir(t);
  const stack = await start(t, dataDir);

  const fleet = await startFleet({
    url: stack.mqttUrl,
    devices: 6,
    rate: 4,
    seed: 'e2e-1',
    faults: 'drop=0.03,duplicate=0.08,garbage=0.05,reorder=0.03,badsig=0.03,badauth=2,spoof=2',
    api: { url: stack.httpUrl, key: ADMIN_KEY },
    windowSeconds: WINDOW_SECONDS,
    graceSeconds: GRACE_SECONDS,
    statePath: path.join(dataDir, 'sim-state.json'),
    recordAcks: true,
    progress: false,
  });
  t.teardown(() => fleet.stop());
  await runFleetFor(fleet, 5, 150);
  const summary = await fleet.stop();
  const lastTs = Date.now();
  t.ok(summary.readingsAcked > 100, `the fleet's readings were acknowledged (${summary.readingsAcked})`);
  t.equal(summary.unacked, 0, 'nothing left unacknowledged');

  // No acknowledged reading is missing from the store.
  let missing = 0;
  let unsigned = 0;
  const { openDatabase } = await import('../../store/sqlite/db.ts');
  const { openSqliteStores } = await import('../../store/sqlite/stores.ts');
  const db = openDatabase(dataDir);
  const { readings } = openSqliteStores(db);
  for (const d of summary.deviceDetails) {
    for (const seq of d.ackedSeqs ?? []) {
      const r = await readings.get(d.deviceId, seq);
      if (!r) missing++;
      else if (r.sig === undefined) unsigned++;
    }
  }
  db.close();
  t.equal(missing, 0, 'every acknowledged reading is stored');
  // The fleet signs by default and registered each device's key: every stored reading carries its signature.
  t.equal(unsigned, 0, 'every stored reading carries its device signature');
  t.ok(summary.faults.badsig > 0, 'the fleet sent readings with bad signatures (refused bad_signature, counted below)');

  // Faults were refused and counted.
  const metrics = await api<string>(stack, '/metrics');
  t.ok(summary.faults.duplicate > 0 && summary.faults.garbage > 0, 'the fleet injected duplicates and garbage');
  t.ok(metric(metrics, 'mrv_readings_duplicate_total') >= summary.faults.duplicate, 'duplicates counted');
  t.ok(metric(metrics, 'mrv_readings_rejected_total') >= summary.faults.garbage, 'garbage counted as rejected');
  for (const [reason, n] of Object.entries(summary.faults.expectedRejections)) {
    t.ok(metric(metrics, 'mrv_readings_rejected_total', `reason="${reason}"`) >= (n as number), `rejections for ${reason} counted (${n} injected)`);
  }
  t.equal(summary.faults.badauth.refused, summary.faults.badauth.attempted, 'wrong credentials refused');
  t.ok(metric(metrics, 'mrv_auth_failed_total') >= summary.faults.badauth.attempted, 'auth failures counted');
  t.ok(metric(metrics, 'mrv_acl_denied_total') >= summary.faults.spoof.sent, 'spoofed topics refused and counted');
  let rejectedRows = 0;
  for (const f of summary.facilityIds) rejectedRows += (await api(stack, `/v1/facilities/${f}/rejections`)).items.length;
  t.ok(rejectedRows >= summary.faults.garbage, `rejections log holds the garbage (${rejectedRows})`);

  // Every facility: contiguous, exactly-once, verified, independently recomputed, chain consistent.
  await waitSettledThrough(stack, summary.facilityIds, lastTs);
  const nets: bigint[] = [];
  for (const f of summary.facilityIds) nets.push((await checkFacility(t, stack, f)).netSum);
  t.ok(nets.some((n) => n > 0n), 'some facility earned credits');
  t.ok(nets.some((n) => n < 0n), 'some facility ran a deficit');
});
