/**
 * `npm run audit` as an auditor runs it: `tsx audit/main.ts bundle.json --rpc URL --ledger 0x…` in a
 * child process against a real CarbonLedger on anvil, on which the fixture's settlement was settled.
 * The untouched bundle exits 0; a value changed, a reading dropped, a signature from another key,
 * a device key swapped in the database only (the bundle's key is not the one the regulator recorded
 * on chain) and a settlement the chain does not hold exit 1 with the reason; usage errors exit 2.
 * Skips when the anvil binary is absent, except under CI where that is a failure.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ethers } from 'ethers';
import { anvilBinary, startAnvil } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { readingLine, signLine, generateDeviceKey } from '../../domain/signature.ts';
import { toReading, type AuditBundle } from '../../audit/bundle.ts';
import { copy, fixture, T0, W } from '../helpers/audit-fixture.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function audit(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'audit/main.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

if (!anvilBinary()) {
  if (process.env.CI) t.fail('anvil binary not found (@foundry-rs/anvil): required under CI');
  else t.plan(0, 'anvil binary not found (@foundry-rs/anvil not installed for this platform)');
} else {
  const chain = await startAnvil();
  t.teardown(() => chain.close());
  const wallet = new ethers.NonceManager(new ethers.Wallet(chain.privateKeys[0], chain.provider));
  const ledger = await Ledger.deploy(wallet, { windowSeconds: W / 1000, confirmTimeoutMs: 30_000 });
  const F = fixture();
  await ledger.registerFacility('F', ethers.computeAddress(chain.privateKeys[3]), '3600', T0);
  await ledger.setDeviceKey('m1', F.key.publicKey); // the regulator's record of m1's key
  await ledger.settleBatch([{ facilityId: 'F', windowStart: T0, windowEnd: T0 + W, netGrams: F.netGrams, evidenceRoot: F.root }]);
  const dir = t.testdir();
  const write = (name: string, b: AuditBundle) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, JSON.stringify(b));
    return file;
  };
  const against = ['--rpc', chain.rpcUrl as string, '--ledger', ledger.address];

  t.test('the untouched bundle matches the chain: exit 0', async (t) => {
    const res = await audit([write('ok.json', F.bundle), ...against]);
    t.equal(res.code, 0, res.stdout + res.stderr);
    t.match(res.stdout, /RESULT: OK/);
    t.match(res.stdout, new RegExp(`chain {8}net ${F.netGrams} g, root ${F.root}`));
    t.notMatch(res.stdout, /records no device keys/, 'the keys were checked against the chain');
    const json = await audit([write('ok-json.json', F.bundle), ...against, '--json']);
    t.match(JSON.parse(json.stdout), { ok: true, chain: { checked: true, keysOnChain: true } });
  });

  t.test("a device key swapped in the database only: the bundle's key is not the chain's, exit 1", async (t) => {
    // Whoever holds the database replaced m1's key and fed readings signed with their own key; the
    // oracle settled them, so net, root and every signature agree with the bundle. Only the
    // regulator's record of m1's key on chain does not.
    const other = await Ledger.deploy(wallet, { windowSeconds: W / 1000, confirmTimeoutMs: 30_000 });
    const swapped = fixture();
    await other.registerFacility('F', ethers.computeAddress(chain.privateKeys[3]), '3600', T0);
    await other.setDeviceKey('m1', F.key.publicKey);
    await other.settleBatch([{ facilityId: 'F', windowStart: T0, windowEnd: T0 + W, netGrams: swapped.netGrams, evidenceRoot: swapped.root }]);
    const res = await audit([write('swapped.json', swapped.bundle), '--rpc', chain.rpcUrl as string, '--ledger', other.address]);
    t.equal(res.code, 1, res.stdout + res.stderr);
    t.match(res.stdout, new RegExp(`\\[key_not_on_chain\\] m1: key ${swapped.key.publicKey} of m1 is not among the keys the ledger recorded for it`));
    t.notMatch(res.stdout, /chain_mismatch|bad_signature|chain_broken/, 'nothing else differs');
    t.equal((await audit([write('swapped-ok.json', F.bundle), '--rpc', chain.rpcUrl as string, '--ledger', ledger.address])).code, 0, 'the original bundle still passes');
  });

  t.test('tampered bundles: exit 1 with the reason', async (t) => {
    const changed = copy(F.bundle);
    changed.devices[1].readings[0].value = '11'; // the unsigned gas meter: only the recomputation shows it
    const dropped = copy(F.bundle);
    dropped.devices[0].readings.splice(0, 1);
    const otherKey = copy(F.bundle);
    const r2 = otherKey.devices[0].readings[0];
    r2.sig = signLine(generateDeviceKey().privateKey, readingLine(toReading('F', 'm1', r2)) as string);
    const cases: [string, AuditBundle, RegExp][] = [
      ['value changed', changed, /\[chain_mismatch\].*the chain's net is 3595155 g, recomputed 3592993 g/],
      ['reading dropped', dropped, /\[chain_broken\] m1#3: hash chain broken at seq 3/],
      ['signature from another key', otherKey, /\[bad_signature\] m1#2/],
    ];
    for (const [name, b, want] of cases) {
      const res = await audit([write(`${name}.json`, b), ...against]);
      t.equal(res.code, 1, name);
      t.match(res.stdout, want, name);
    }
    const json = await audit([write('dropped.json', dropped), ...against, '--json']);
    t.equal(json.code, 1);
    t.match(JSON.parse(json.stdout), { ok: false, chain: { checked: true, netGrams: F.netGrams.toString() } });
  });

  t.test('a window the chain did not settle, and usage errors', async (t) => {
    const later = copy(F.bundle);
    later.window = { start: T0 + W, end: T0 + 2 * W };
    const res = await audit([write('later.json', later), ...against]);
    t.equal(res.code, 1);
    t.match(res.stdout, /\[chain_mismatch\]: the ledger has no settlement of F/);
    t.equal((await audit([write('ok2.json', F.bundle)])).code, 2, 'no --rpc');
    t.equal((await audit([path.join(dir, 'missing.json'), ...against])).code, 2, 'no file');
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '{"format":"nope"}');
    const r = await audit([bad, ...against]);
    t.equal(r.code, 2);
    t.match(r.stderr, /not an audit bundle/);
    const offline = await audit([write('ok3.json', F.bundle), '--offline']);
    t.equal(offline.code, 1, 'offline: not verified against the chain');
    t.match(offline.stdout, /NOT VERIFIED/);
  });
}
