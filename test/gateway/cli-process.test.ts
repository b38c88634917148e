/**
 * `npm run cli` as a user runs it: `tsx gateway/cli.ts …` in a child process, against the local
 * chain `npm start` runs (contracts/client/local.ts: anvil, the ledger deployed, its address in
 * DATA_DIR/chain/deployment.json). Checks:
 * - --help at top level and on every command exits 0 and lists every option with its default;
 *   an unknown option or command exits 2 with a one-line message and the usage;
 * - keygen writes a 0600 key file, prints its address, refuses to overwrite;
 * - the settings shared with `npm start` (HTTP_PORT, ANVIL_PORT, CHAIN_RPC_URL, …) are checked as it
 *   checks them: a bad one exits 1 with npm start's own message before anything is done;
 * - with only DATA_DIR and ANVIL_PORT in the environment, no chain flag is needed (--help says
 *   where the defaults came from);
 * - a retire of more than the key holds exits 1 with the decoded sentence, not "unknown custom
 *   error"; a retire within the balance goes through; unreachable node / no contract are said plainly.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ethers } from 'ethers';
import { vintageOf, vintagePrefix } from '../../contracts/client/port.ts';
import { startLocalChain } from '../../contracts/client/local.ts';
import { silentLogger } from '../../domain/logger.ts';
import { buildGateway } from '../../gateway/app.ts';
import { freePort } from '../helpers/servers.ts';
import { startGateway } from './harness.ts';
import { tmpDir } from '../helpers/tmp.ts';
import { missing, skipUnless } from '../helpers/require.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The environment of a user's shell: none of the variables the CLI reads, unless given. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['DATA_DIR', 'ANVIL_PORT', 'CHAIN_RPC_URL', 'CONTRACT_ADDRESS', 'HOLDER_KEY_FILE', 'HOLDER_PRIVATE_KEY', 'API_KEY', 'API_KEY_FILE', 'HTTP_PORT']) delete env[k];
  return { ...env, ...extra };
}

function cli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'gateway/cli.ts', ...args], { cwd: ROOT, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const OPTIONS: Record<string, string[]> = {
  keygen: ['--out', '--json', '--help'],
  balance: ['--address', '--key-file', '--key', '--rpc', '--contract', '--help'],
  certificate: ['--rpc', '--contract', '--help'],
  retire: ['--batch-ids', '--amounts', '--beneficiary', '--reason', '--key-file', '--key', '--rpc', '--contract', '--relay', '--api-key-file', '--api-key', '--valid-seconds', '--help'],
};

t.test('--help everywhere, unknown options and commands exit 2', async (t) => {
  const top = await cli(['--help']);
  t.equal(top.code, 0, top.stderr);
  t.match(top.stdout, /^usage: npm run cli -- <command> \[options\]/);
  for (const c of Object.keys(OPTIONS)) t.match(top.stdout, new RegExp(`\\n  ${c} `), `the command list names ${c}`);

  for (const [c, options] of Object.entries(OPTIONS)) {
    for (const form of [[c, '--help'], [c, '-h'], ['help', c]]) {
      const r = await cli(form);
      t.equal(r.code, 0, `${form.join(' ')} exits 0`);
      t.equal(r.stderr, '', `${form.join(' ')} writes nothing to stderr`);
      t.match(r.stdout, new RegExp(`^usage: npm run cli -- ${c} `));
      for (const o of options) t.match(r.stdout, new RegExp(`\\n  ${o}\\b`), `${c} --help lists ${o}`);
    }
  }
  // An external chain's URL is shown without its credentials.
  const external = await cli(['balance', '--help'], { CHAIN_RPC_URL: 'https://user:hunter2@rpc.example/v3/0123456789abcdef0123456789abcdef', CONTRACT_ADDRESS: '0x' + '22'.repeat(20) });
  t.equal(external.code, 0);
  t.match(external.stdout, /default: https:\/\/REDACTED@rpc\.example\/v3\/REDACTED \(from CHAIN_RPC_URL\)/);
  t.match(external.stdout, `default: 0x${'22'.repeat(20)} (from CONTRACT_ADDRESS)`);
  t.notMatch(external.stdout, /hunter2|0123456789abcdef/);

  // --help wins even after another mistake on the line.
  t.equal((await cli(['retire', '--rpc', '--help'])).code, 0);

  const bogus = await cli(['retire', '--amounts', '5', '--bogus']);
  t.equal(bogus.code, 2);
  t.match(bogus.stderr, /^unknown option '--bogus' for retire\n/);
  t.match(bogus.stderr, /usage: npm run cli -- retire --batch-ids ID\[,ID…\] --amounts N\[,N…\]/);
  t.match(bogus.stderr, /npm run cli -- retire --help` lists every option/);
  t.equal(bogus.stdout, '');

  const positional = await cli(['keygen', 'extra']);
  t.equal(positional.code, 2);
  t.match(positional.stderr, /unexpected argument 'extra' for keygen/);

  const unknown = await cli(['burn']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /^unknown command 'burn'\n/);
  t.match(unknown.stderr, /usage: npm run cli -- <command>/);
  t.equal((await cli([])).code, 2, 'no command: usage, exit 2');
  const helpUnknown = await cli(['help', 'burn']);
  t.equal(helpUnknown.code, 2);
  t.match(helpUnknown.stderr, /^unknown command 'burn'\n/);
});

t.test('keygen writes a 0600 key file and refuses to overwrite it', async (t) => {
  const dir = tmpDir(t, 'mrv-cli-keygen-');
  const file = path.join(dir, 'plant.key');
  const r = await cli(['keygen', '--out', file]);
  t.equal(r.code, 0, r.stderr);
  t.equal(fs.statSync(file).mode & 0o777, 0o600, 'owner-only');
  const key = fs.readFileSync(file, 'utf8').trim();
  t.match(key, /^0x[0-9a-f]{64}$/);
  const address = ethers.computeAddress(key);
  t.match(r.stdout, `Facility owner address: ${address}\n`);
  t.match(r.stdout, `"owner":"${address}"`, 'the registration example carries the address');
  t.match(r.stdout, `--key-file `, 'says how to use the key');
  t.notMatch(r.stdout + r.stderr, key.slice(2), 'the key itself is never printed');

  const again = await cli(['keygen', '--out', file]);
  t.equal(again.code, 1);
  t.match(again.stderr, /already exists/);
  t.equal(fs.readFileSync(file, 'utf8').trim(), key, 'the existing key is untouched');

  const json = await cli(['keygen', '--out', path.join(dir, 'second.key'), '--json']);
  t.equal(json.code, 0, json.stderr);
  const j = JSON.parse(json.stdout);
  t.equal(j.keyFile, path.join(dir, 'second.key'));
  t.equal(j.address, ethers.computeAddress(fs.readFileSync(j.keyFile, 'utf8').trim()));
  t.not(j.address, address);
});

t.test('a bad HTTP_PORT, ANVIL_PORT or CHAIN_RPC_URL: the same message as npm start, exit 1, nothing done', async (t) => {
  const dir = tmpDir(t, 'mrv-cli-settings-');
  // npm start itself (main.ts as `npm start` runs it), with the same environment.
  const start = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'main.ts'], { cwd: ROOT, env: cleanEnv({ DATA_DIR: path.join(dir, 'data'), HTTP_PORT: '80a' }), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
  t.equal(start.code, 1, 'npm start refuses');
  const said = /carbon-mrv failed to start: (.*)/.exec(start.stderr)?.[1];
  t.equal(said, 'HTTP_PORT: not a port: 80a', 'npm start names the setting and its value');

  const file = path.join(dir, 'plant.key');
  const keygen = await cli(['keygen', '--out', file], { DATA_DIR: path.join(dir, 'data'), HTTP_PORT: '80a' });
  t.equal(keygen.code, 1, 'the CLI refuses too');
  t.equal(keygen.stderr.trim(), `keygen failed: ${said}`, 'with the same message');
  t.notOk(fs.existsSync(file), 'before doing anything: no key file written');

  const balance = await cli(['balance', '--address', '0x' + '11'.repeat(20)], { ANVIL_PORT: '70000' });
  t.equal(balance.code, 1);
  t.equal(balance.stderr.trim(), 'balance failed: ANVIL_PORT: not a port: 70000', 'ANVIL_PORT is checked as npm start checks it');
  const rpc = await cli(['certificate', '1'], { CHAIN_RPC_URL: 'not a url', CONTRACT_ADDRESS: '0x' + '22'.repeat(20) });
  t.equal(rpc.code, 1);
  t.equal(rpc.stderr.trim(), 'certificate failed: CHAIN_RPC_URL: not a URL: not a url');
  const help = await cli(['help', 'balance'], { ANVIL_PORT: 'x' });
  t.equal(help.code, 1, 'help of a command whose defaults come from a bad setting');
  t.equal(help.stderr.trim(), 'balance failed: ANVIL_PORT: not a port: x');

  // Empty means unset, as for npm start: the default port, not "http://127.0.0.1:".
  const empty = await cli(['keygen', '--out', path.join(dir, 'second.key')], { HTTP_PORT: '' });
  t.equal(empty.code, 0, empty.stderr);
  t.match(empty.stdout, 'http://127.0.0.1:3000/v1/facilities');
});

t.test('on the local stack: defaults from DATA_DIR, decoded refusals', { skip: skipUnless(missing.anvil()) }, async (t) => {
  const dataDir = tmpDir(t, 'mrv-cli-stack-');
  const port = await freePort();
  const local = await startLocalChain({ dataDir, port, windowSeconds: 3600, logger: silentLogger });
  t.teardown(() => local.close());
  const deployment = path.join(dataDir, 'chain', 'deployment.json');
  t.ok(fs.existsSync(deployment), 'the local chain wrote its deployment file');
  const env = { DATA_DIR: dataDir, ANVIL_PORT: String(port) };

  // --help says what the defaults are on this machine and where they came from.
  const help = await cli(['retire', '--help'], env);
  t.equal(help.code, 0);
  t.match(help.stdout, `default: http://127.0.0.1:${port} (from the local chain of npm start, ANVIL_PORT=${port})`);
  t.match(help.stdout, `default: ${local.address} (from ${deployment}, written by npm start (DATA_DIR=${dataDir}))`);

  // The factory's key, and its facility registered with that owner, credits settled to it.
  const keyFile = path.join(dataDir, 'plant.key');
  const gen = await cli(['keygen', '--out', keyFile, '--json'], env);
  t.equal(gen.code, 0, gen.stderr);
  const owner = JSON.parse(gen.stdout).address as string;
  // The last hour that has ended (the ledger settles ended windows; an owner whose settlement lags is frozen).
  const first = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000;
  await local.gatewayLedger.registerFacility('plant-7', owner, '36000', first);
  await local.oracleLedger.settleBatch([{ facilityId: 'plant-7', windowStart: first, windowEnd: first + 3_600_000, netGrams: 5_000_000n, evidenceRoot: ethers.ZeroHash }]);
  const batch = (await local.oracleLedger.batches('plant-7'))[0].id;
  // Gas money for the holder's own transactions (the relay path needs none).
  await (await local.chain.signers[0].sendTransaction({ to: owner, value: ethers.parseEther('1') })).wait();

  const bal = await cli(['balance', '--key-file', keyFile], env);
  t.equal(bal.code, 0, bal.stderr);
  t.same(JSON.parse(bal.stdout), { address: owner, balanceGrams: '5000000', balanceTonnes: '5', batches: [{ batchId: batch, facilityId: 'plant-7', vintage: vintagePrefix(vintageOf(first)), balanceGrams: '5000000' }] }, 'no chain flag needed');

  // More than held: the revert decoded into a sentence, exit 1.
  const over = await cli(['retire', '--key-file', keyFile, '--batch-ids', batch, '--amounts', '9000000', '--beneficiary', 'City of X'], env);
  t.equal(over.code, 1);
  t.equal(over.stdout, '');
  t.equal(
    over.stderr.trim(),
    'retire failed: insufficient balance: you hold 5000000 g (5 t), tried to retire 9000000 g (9 t); retire at most 5000000 g, or wait for more settled windows',
  );
  t.notMatch(over.stderr, /unknown custom error/);

  // Within the balance: retired, with the holder's key from the environment this time.
  const ok = await cli(['retire', '--batch-ids', batch, '--amounts', '1500000', '--beneficiary', 'City of X', '--reason', 'scope 2 2026'], { ...env, HOLDER_KEY_FILE: keyFile });
  t.equal(ok.code, 0, ok.stderr);
  t.match(JSON.parse(ok.stdout), { ok: true, via: 'direct', holder: owner, amountGrams: '1500000', id: '1', txHash: /^0x[0-9a-f]{64}$/ });
  t.equal(await local.oracleLedger.heldBy(owner), 3_500_000n);

  // Through the gateway's relay (API key from the environment): the refusal is the same sentence.
  const h = await startGateway(t, { deps: { ledger: undefined } });
  const app = await buildGateway({ db: h.db, registry: h.registry, ledger: local.gatewayLedger, logger: silentLogger });
  t.teardown(() => app.close());
  const base = await app.listen({ port: 0, host: '127.0.0.1' });
  const relayed = await cli(['retire', '--key-file', keyFile, '--relay', base, '--batch-ids', batch, '--amounts', '4000000', '--beneficiary', 'Hospital Y'], { ...env, API_KEY: h.key.regulator });
  t.equal(relayed.code, 1);
  t.match(
    relayed.stderr,
    `retire failed: relay answered 422: RELAY_REJECTED retirement rejected: insufficient balance: account ${owner} holds 3500000 g (3.5 t), the request needs 4000000 g (4 t); ask for at most 3500000 g`,
  );
  t.notMatch(relayed.stderr, /warning/, 'no key on the command line, no warning');
  const relayedOk = await cli(['retire', '--key-file', keyFile, '--relay', base, '--batch-ids', batch, '--amounts', '500000', '--beneficiary', 'Hospital Y'], { ...env, API_KEY: h.key.regulator });
  t.equal(relayedOk.code, 0, relayedOk.stderr);
  t.match(JSON.parse(relayedOk.stdout), { ok: true, via: 'relay', holder: owner, id: '2' });
  t.equal(await local.oracleLedger.heldBy(owner), 3_000_000n);

  // A key on the command line works, with a warning.
  const raw = await cli(['balance', '--key', fs.readFileSync(keyFile, 'utf8').trim()], env);
  t.equal(raw.code, 0, raw.stderr);
  t.match(raw.stderr, /^warning: --key puts the private key on the command line/);

  // A key file others can read is warned about.
  fs.chmodSync(keyFile, 0o644);
  const loose = await cli(['balance', '--key-file', keyFile], env);
  t.equal(loose.code, 0);
  t.match(loose.stderr, `warning: key file ${keyFile} is readable by other users (mode 644): chmod 600 ${keyFile}`);
  fs.chmodSync(keyFile, 0o600);

  // Wrong places are said plainly, before anything is sent.
  const nowhere = await cli(['balance', '--key-file', keyFile], { ...env, CONTRACT_ADDRESS: ethers.getAddress('0x' + '11'.repeat(20)) });
  t.equal(nowhere.code, 1);
  t.match(nowhere.stderr, /^balance failed: there is no contract at 0x1111111111111111111111111111111111111111 on the chain at http:\/\/127\.0\.0\.1:\d+/);
  const closed = await freePort();
  const down = await cli(['retire', '--key-file', keyFile, '--batch-ids', batch, '--amounts', '1', '--beneficiary', 'x'], { ...env, ANVIL_PORT: String(closed) });
  t.equal(down.code, 1);
  t.match(down.stderr, `retire failed: cannot reach the chain at http://127.0.0.1:${closed}`);

  const noGateway = await cli(['retire', '--key-file', keyFile, '--relay', `http://127.0.0.1:${closed}`, '--batch-ids', batch, '--amounts', '1', '--beneficiary', 'x'], { ...env, API_KEY: 'k' });
  t.equal(noGateway.code, 1);
  t.match(noGateway.stderr, `retire failed: cannot reach the gateway at http://127.0.0.1:${closed} (ECONNREFUSED)`);
  const garbage = path.join(dataDir, 'garbage.key');
  fs.writeFileSync(garbage, 'not a key\n', { mode: 0o600 });
  const bad = await cli(['balance', '--key-file', garbage], env);
  t.equal(bad.code, 2);
  t.match(bad.stderr, `--key-file ${garbage} does not hold a 32-byte hex private key`);
  const missing = await cli(['balance'], { ...env, HOLDER_KEY_FILE: path.join(dataDir, 'nope.key') });
  t.equal(missing.code, 2);
  t.match(missing.stderr, `HOLDER_KEY_FILE ${path.join(dataDir, 'nope.key')}: ${path.join(dataDir, 'nope.key')} does not exist (npm run cli -- keygen --out`);

  // Without a deployment file the usage error says where the default was looked for.
  const empty = tmpDir(t, 'mrv-cli-empty-');
  const none = await cli(['balance', '--key-file', keyFile], { DATA_DIR: empty, ANVIL_PORT: String(port) });
  t.equal(none.code, 2);
  t.match(none.stderr, `--contract is required (no default: ${path.join(empty, 'chain', 'deployment.json')} does not exist (has npm start run with this DATA_DIR?))`);
});
