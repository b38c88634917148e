/**
 * Issue 14: two oracle processes (`oracle/main.ts`, as `npm run start:oracle`, each with its own key)
 * on one PostgreSQL database and a real anvil, on a one-second cron with two-second windows. Once they
 * settle, the one holding the lease is killed with SIGKILL (mid-run); the other keeps settling (the
 * lease of a killed holder is free at once, not after its 60 s ttl). At the end every window is settled once on chain, contiguously, and recorded once with the
 * chain's root. Waits are bounded polls of the chain.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ethers } from 'ethers';
import t from 'tap';
import { anvilBinary, startAnvil } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { openPostgresStores } from '../../store/postgres/stores.ts';
import { poll } from '../helpers/eventually.ts';
import { postgresForFile, postgresMissing } from '../helpers/postgres.ts';
import { missing, skipUnless } from '../helpers/require.ts';

const W = 2_000;
const skip = skipUnless(postgresMissing() ?? missing.anvil());

t.test('a SIGKILLed oracle is replaced by the other; every window settled once', { skip, timeout: 240_000 }, async (t) => {
  if (!anvilBinary()) return;
  const cluster = (await postgresForFile(t))!;
  const url = await cluster.createDatabase();
  const anvil = await startAnvil();
  t.teardown(() => anvil.close());
  const admin = await Ledger.deploy(new ethers.NonceManager(new ethers.Wallet(anvil.privateKeys[0], anvil.provider)), { windowSeconds: W / 1000, confirmTimeoutMs: 20_000 });
  for (const i of [1, 2]) {
    const k = ethers.computeAddress(anvil.privateKeys[i]);
    await admin.grantRole('oracle', k);
    await admin.grantRole('regulator', k);
  }
  const stores = await openPostgresStores(url);
  t.teardown(() => stores.close());
  await stores.registry.createFacility({ id: 'F', name: 'F', owner: ethers.computeAddress(anvil.privateKeys[5]), baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });

  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const start = (i: number): ChildProcess => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'oracle/main.ts'], {
      cwd: root,
      env: {
        ...process.env,
        DATA_DIR: t.testdir() + `-oracle-${i}`,
        DATABASE_URL: url,
        READINGS_STORE: 'postgres',
        INFLUX_URL: '',
        CHAIN_RPC_URL: anvil.rpcUrl!,
        CONTRACT_ADDRESS: admin.address,
        CHAIN_START_BLOCK: String(admin.startBlock ?? 0),
        ORACLE_PRIVATE_KEY: anvil.privateKeys[i],
        WINDOW_SECONDS: String(W / 1000),
        GRACE_SECONDS: '1',
        ORACLE_CRON: '* * * * * *',
        LOG_LEVEL: 'error',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    return child;
  };
  const next = async () => Number((await admin.facility('F')).nextWindowStart);
  const a = start(1);
  const b = start(2);
  const first = await poll(async () => (await admin.settlements({ facilityId: 'F' })).length >= 3, { timeoutMs: 90_000, everyMs: 250 });
  t.ok(first, 'the two oracles settle');

  // The leader: the process holding the lease now (its holder id carries its pid), killed mid-run.
  let leaderPid: number | undefined;
  await poll(
    async () => {
      const row = (await stores.pool.query<{ holder: string }>("SELECT holder FROM oracle_lease WHERE name = 'oracle'")).rows[0];
      leaderPid = row ? Number(row.holder.split(':')[1]) : undefined;
      return leaderPid === a.pid || leaderPid === b.pid;
    },
    { timeoutMs: 60_000, everyMs: 10 },
  );
  const leader = leaderPid === b.pid ? b : a;
  const survivor = leader === a ? b : a;
  t.ok(leaderPid === a.pid || leaderPid === b.pid, 'caught the leader holding the lease');
  const exited = new Promise((resolve) => leader.once('exit', resolve));
  leader.kill('SIGKILL');
  await exited;
  const at = await next();
  t.ok(await poll(async () => (await next()) >= at + 3 * W, { timeoutMs: 90_000, everyMs: 250 }), 'the survivor settles the next windows');

  const stopped = new Promise((resolve) => survivor.once('exit', resolve));
  survivor.kill('SIGTERM');
  await stopped;
  const events = await admin.settlements({ facilityId: 'F' });
  const starts = events.map((e) => Number(e.windowStart));
  t.ok(starts.every((s, k) => k === 0 || s === starts[k - 1] + W), 'contiguous windows, none twice');
  const recorded = await stores.records.listSettlements({ facilityId: 'F', limit: 10_000 });
  t.same(
    recorded.map((s) => [s.windowStart, s.evidenceRoot.toLowerCase()]),
    events.map((e) => [Number(e.windowStart), e.evidenceRoot.toLowerCase()]),
    "every settled window recorded once, with the chain's root",
  );
});
