/**
 * The local chain of `npm start` (issue 10 item 12) against a real anvil, over its HTTP JSON-RPC:
 * - no CORS allowance for a web page (no Access-Control-Allow-Origin, the preflight refused, and a
 *   "simple" text/plain request, which needs no preflight, is not a JSON-RPC call);
 * - every account anvil unlocks (`eth_accounts`) fails to settle (mint), register, grant a role or
 *   pause with `AccessControlUnauthorizedAccount`, and holds no role, while the role keys work;
 * - the mnemonic and the role keys are 0600 files, DATA_DIR and its chain directory 0700, and a
 *   restart reuses them (same accounts, same contract, same roles);
 * - a DATA_DIR from an older version (roles on public test-mnemonic accounts) is moved over.
 * Skips when the anvil binary is absent, except under CI where that is a failure.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ethers } from 'ethers';
import { anvilBinary, startAnvil, testPrivateKeys } from '../../contracts/client/chain.ts';
import { keySigner } from '../../contracts/client/connect.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { LEDGER_ROLES } from '../../contracts/client/units.ts';
import type { LedgerRole } from '../../contracts/client/port.ts';
import { LOCAL_ROLES, startLocalChain, type LocalChain } from '../../contracts/client/local.ts';
import { createLogger, silentLogger, type Logger } from '../../domain/logger.ts';
import { loadArtifact } from '../../contracts/client/artifact.ts';
import { poll } from '../helpers/eventually.ts';

const CI = Boolean(process.env.CI);
const ROLE_NAMES: LedgerRole[] = ['admin', 'regulator', 'oracle'];

function dataDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-local-chain-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'data');
}

async function rpc(url: string, method: string, params: unknown[], headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
  return { status: res.status, headers: res.headers, body: await res.json().catch(() => undefined) };
}

const mode = (p: string) => fs.statSync(p).mode & 0o777;

async function start(t: Test, dir: string, windowSeconds = 3600, logger: Logger = silentLogger): Promise<LocalChain> {
  const local = await startLocalChain({ dataDir: dir, port: 0, windowSeconds, logger });
  t.teardown(() => local.close());
  return local;
}

if (!anvilBinary()) {
  if (CI) t.fail('anvil binary not found (@foundry-rs/anvil): required under CI');
  else t.plan(0, 'anvil binary not found (@foundry-rs/anvil not installed for this platform)');
} else {
  t.test('a web page gets no CORS allowance from the local chain', async (t) => {
    const local = await start(t, dataDir(t));
    const origin = 'http://evil.example';
    const r = await rpc(local.rpcUrl, 'eth_accounts', [], { origin });
    t.equal(r.status, 200, 'a local client still talks to the node');
    t.equal(r.headers.get('access-control-allow-origin'), null, 'no Access-Control-Allow-Origin for a page');
    const pre = await fetch(local.rpcUrl, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
    t.equal(pre.headers.get('access-control-allow-origin'), null, 'the preflight grants nothing');
    t.not(pre.status, 200, `the preflight is refused (${pre.status})`);
    // A "simple" request (text/plain needs no preflight) reaches the node but is not a JSON-RPC call.
    const simple = await fetch(local.rpcUrl, {
      method: 'POST',
      headers: { origin, 'content-type': 'text/plain' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_accounts', params: [] }),
    });
    const body = (await simple.json()) as { result?: unknown; error?: unknown };
    t.equal(body.result, undefined, 'a text/plain body is not executed');
    t.ok(body.error, 'it is answered with an error');
  });

  t.test('no account the node unlocks holds a role or can mint, settle, register, grant or pause', async (t) => {
    const dir = dataDir(t);
    const local = await start(t, dir);
    const ledger = Ledger.attach(local.address, local.chain.provider as unknown as ethers.Signer);
    const iface = ledger.contract.interface;
    const unlocked = (await rpc(local.rpcUrl, 'eth_accounts', [])).body.result as string[];
    t.ok(unlocked.length >= 1, `${unlocked.length} unlocked accounts`);
    const exposed = new Set(testPrivateKeys(10).map((k) => ethers.computeAddress(k).toLowerCase()));
    t.notOk(unlocked.some((a) => exposed.has(a.toLowerCase())), 'the mnemonic is not the public test one');
    t.notOk(Object.values(local.accounts).some((a) => unlocked.some((u) => u.toLowerCase() === a.toLowerCase())), 'the role keys are not unlocked');

    const facility = ethers.keccak256(ethers.toUtf8Bytes('F'));
    const calls: [string, string][] = [
      ['settleBatch (mint)', iface.encodeFunctionData('settleBatch', [[{ facility, windowStart: 0, windowEnd: 3600, netGrams: 10n ** 15n, evidenceRoot: ethers.ZeroHash }]])],
      ['settle', iface.encodeFunctionData('settle', [{ facility, windowStart: 0, windowEnd: 3600, netGrams: 10n ** 15n, evidenceRoot: ethers.ZeroHash }])],
      ['registerFacility', iface.encodeFunctionData('registerFacility', ['F', unlocked[0], 1n, 0n])],
      ['grantRole(oracle)', iface.encodeFunctionData('grantRole', [LEDGER_ROLES.oracle, unlocked[0]])],
      ['grantRole(admin)', iface.encodeFunctionData('grantRole', [LEDGER_ROLES.admin, unlocked[0]])],
      ['pause', iface.encodeFunctionData('pause', [])],
    ];
    for (const from of unlocked) {
      for (const role of ROLE_NAMES) t.notOk(await ledger.hasRole(role, from), `${from} does not hold ${role}`);
      for (const [what, data] of calls) {
        const r = await rpc(local.rpcUrl, 'eth_sendTransaction', [{ from, to: local.address, data, gas: '0x1000000' }]);
        let name: string | undefined;
        const revert = r.body.error?.data ?? (r.body.result ? await revertOf(local, r.body.result) : undefined);
        if (typeof revert === 'string') name = iface.parseError(revert)?.name;
        t.equal(name, 'AccessControlUnauthorizedAccount', `${what} from unlocked ${from.slice(0, 10)}… reverts for lack of role`, { body: r.body });
      }
    }
    // The role keys hold exactly their roles.
    for (const [key, roles] of Object.entries(LOCAL_ROLES)) {
      const a = local.accounts[key as keyof typeof LOCAL_ROLES];
      t.same(await Promise.all(ROLE_NAMES.map((r) => ledger.hasRole(r, a))), ROLE_NAMES.map((r) => roles.includes(r)), `${key} holds ${roles.join(', ')}`);
    }
    t.equal(await local.chain.provider.getCode(local.address).then((c) => c.length > 2), true);

    // Secrets: 0600 files, 0700 directories.
    t.equal(mode(dir), 0o700, 'DATA_DIR is 0700');
    t.equal(mode(path.join(dir, 'chain')), 0o700, 'DATA_DIR/chain is 0700');
    t.equal(mode(local.files.mnemonic), 0o600, 'the mnemonic file is 0600');
    for (const f of Object.values(local.files.keys)) t.equal(mode(f), 0o600, `${path.basename(f)} is 0600`);
    t.equal(mode(path.dirname(local.files.keys.admin)), 0o700, 'the keys directory is 0700');
    const phrase = fs.readFileSync(local.files.mnemonic, 'utf8').trim();
    t.ok(ethers.Mnemonic.isValidMnemonic(phrase), 'a valid BIP-39 mnemonic');
    t.equal(ethers.computeAddress(testPrivateKeys(1, phrase)[0]).toLowerCase(), unlocked[0].toLowerCase(), 'anvil runs on the kept mnemonic');

    // Restart on the same DATA_DIR: same mnemonic, keys, contract and roles; files tightened if loosened.
    const before = { address: local.address, accounts: local.accounts, unlocked };
    await local.close();
    fs.chmodSync(local.files.keys.oracle, 0o644);
    fs.chmodSync(dir, 0o755);
    const again = await start(t, dir);
    t.equal(again.deployed, false, 'not deployed again');
    t.equal(again.address, before.address);
    t.same(again.accounts, before.accounts, 'same role keys');
    t.same((await rpc(again.rpcUrl, 'eth_accounts', [])).body.result, before.unlocked, 'same dev accounts (the same mnemonic)');
    t.equal(mode(local.files.keys.oracle), 0o600, 'a loosened key file is tightened again');
    t.equal(mode(dir), 0o700, 'a loosened DATA_DIR is tightened again');
    const l2 = Ledger.attach(again.address, again.chain.provider as unknown as ethers.Signer);
    t.ok(await l2.hasRole('oracle', again.accounts.oracle));
    t.notOk(await l2.hasRole('admin', before.unlocked[0]));
  });

  t.test('extra keys (one per oracle and gateway process of a cluster) hold the roles of their job and are kept', async (t) => {
    const dir = dataDir(t);
    const extraKeys = [{ name: 'oracle-2', as: 'oracle' as const }, { name: 'gateway-2', as: 'gateway' as const }];
    const local = await startLocalChain({ dataDir: dir, port: 0, windowSeconds: 3600, logger: silentLogger, extraKeys });
    let closed = false;
    t.teardown(() => (closed ? undefined : local.close()));
    const key = (name: string) => fs.readFileSync(local.files.extra[name], 'utf8').trim();
    const oracle2 = ethers.computeAddress(key('oracle-2'));
    const gateway2 = ethers.computeAddress(key('gateway-2'));
    t.equal(new Set([oracle2, gateway2, ...Object.values(local.accounts)]).size, 5, 'five distinct keys');
    for (const f of Object.values(local.files.extra)) t.equal(mode(f), 0o600, `${path.basename(f)} is 0600`);
    const view = Ledger.attach(local.address, local.chain.provider as unknown as ethers.Signer);
    t.same(await Promise.all(ROLE_NAMES.map((r) => view.hasRole(r, oracle2))), [false, true, true], 'oracle-2: regulator and oracle, as the oracle key');
    t.same(await Promise.all(ROLE_NAMES.map((r) => view.hasRole(r, gateway2))), [false, true, false], 'gateway-2: regulator, as the gateway key');
    // Both oracle keys settle, each with its own nonces: sent at once, neither waits for the other.
    const owner = ethers.Wallet.createRandom().address;
    await local.gatewayLedger.registerFacility('F', owner, '1', 0);
    await local.gatewayLedger.registerFacility('G', owner, '1', 0);
    const second = Ledger.attach(local.address, keySigner(key('oracle-2'), local.chain.provider));
    const root = `0x${'ab'.repeat(32)}`;
    const [a, b] = await Promise.all([
      local.oracleLedger.settleBatch([{ facilityId: 'F', windowStart: 0, windowEnd: 3_600_000, netGrams: 5n, evidenceRoot: root }]),
      second.settleBatch([{ facilityId: 'G', windowStart: 0, windowEnd: 3_600_000, netGrams: 5n, evidenceRoot: root }]),
    ]);
    t.same([...a.results, ...b.results].map((r) => r.status), ['settled', 'settled']);
    closed = true;
    await local.close();
    // A restart keeps the same keys and their roles.
    const again = await startLocalChain({ dataDir: dir, port: 0, windowSeconds: 3600, logger: silentLogger, extraKeys });
    t.teardown(() => again.close());
    t.equal(ethers.computeAddress(fs.readFileSync(again.files.extra['oracle-2'], 'utf8').trim()), oracle2, 'the same oracle-2 key after a restart');
    t.ok(await Ledger.attach(again.address, again.chain.provider as unknown as ethers.Signer).hasRole('oracle', oracle2), 'still an oracle');
    await t.rejects(startLocalChain({ dataDir: dir, port: 0, windowSeconds: 3600, logger: silentLogger, extraKeys: [{ name: 'admin', as: 'oracle' }] }), /extra key name/);
  });

  t.test('a DATA_DIR from before (roles on public test-mnemonic accounts) is moved over to the role keys', async (t) => {
    const dir = dataDir(t);
    const chainDir = path.join(dir, 'chain');
    // What the previous version of startLocalChain left: test mnemonic, dev accounts 0/1/2 holding the roles.
    const old = await startAnvil({ stateFile: path.join(chainDir, 'anvil-state.json') });
    const keys = testPrivateKeys(3);
    const [admin, oracle, gateway] = keys.map((k) => keySigner(k, old.provider));
    const deployed = await Ledger.deploy(admin, { windowSeconds: 3600, regulator: await gateway.getAddress(), oracle: await oracle.getAddress() });
    fs.writeFileSync(path.join(chainDir, 'deployment.json'), JSON.stringify({ address: deployed.address, chainId: '31337', deployedAt: new Date().toISOString() }));
    await old.close();

    const local = await start(t, dir);
    t.equal(local.address, deployed.address, 'the same ledger, not a new deployment');
    const l = Ledger.attach(local.address, local.chain.provider as unknown as ethers.Signer);
    for (const k of keys) for (const role of ROLE_NAMES) t.notOk(await l.hasRole(role, ethers.computeAddress(k)), `public test key ${ethers.computeAddress(k).slice(0, 10)}… lost ${role}`);
    t.ok(await l.hasRole('admin', local.accounts.admin));
    t.ok(await l.hasRole('regulator', local.accounts.gateway));
    t.ok(await l.hasRole('oracle', local.accounts.oracle));
    t.ok(await l.hasRole('regulator', local.accounts.oracle));
    // and the oracle key can settle: register through the gateway key, settle through the oracle key
    const owner = ethers.Wallet.createRandom().address;
    await local.gatewayLedger.registerFacility('F', owner, '1', 0);
    const res = await local.oracleLedger.settleBatch([{ facilityId: 'F', windowStart: 0, windowEnd: 3_600_000, netGrams: 5n, evidenceRoot: `0x${'ab'.repeat(32)}` }]);
    t.same(res.results.map((r) => r.status), ['settled']);
  });
}

if (anvilBinary()) {
  t.test('a DATA_DIR whose remembered contract is not a CreditLedger of these windows gets a new ledger, said in the log', async (t) => {
    const dir = dataDir(t);
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s)) }, 'json');
    const first = await start(t, dir, 3600, logger);
    // What an older version left: its ledger (here any other contract: the ERC-20 CarbonLedger had no windowSeconds()).
    const naive = loadArtifact('NaiveCredit', 'bench/NaiveCredit.sol');
    const admin = keySigner(fs.readFileSync(first.files.keys.admin, 'utf8').trim(), first.chain.provider);
    const old = await (await new ethers.ContractFactory(naive.abi as ethers.InterfaceAbi, naive.bytecode, admin).deploy()).waitForDeployment();
    const file = path.join(dir, 'chain', 'deployment.json');
    fs.writeFileSync(file, JSON.stringify({ address: await old.getAddress(), chainId: '31337', deployedAt: new Date().toISOString() }));
    await first.chain.saveState?.();
    await first.close();

    const second = await start(t, dir, 3600, logger);
    t.not(second.address, await old.getAddress(), 'a CreditLedger deployed instead');
    t.equal(second.deployed, true);
    t.equal(await second.oracleLedger.windowMs(), 3_600_000);
    t.ok(lines.some((l) => l.level === 40 && /not a CreditLedger/.test(String(l.msg))), 'the log says why');
    await second.close();

    // Another WINDOW_SECONDS: the ledger's windows are fixed, so a new one for the new length.
    const third = await start(t, dir, 60, logger);
    t.not(third.address, second.address);
    t.equal(await third.oracleLedger.windowMs(), 60_000);
    t.ok(lines.some((l) => l.level === 40 && /has 3600 s windows but WINDOW_SECONDS is 60/.test(String(l.msg))));
    await third.close();
    const fourth = await start(t, dir, 60, logger);
    t.equal(fourth.address, third.address, 'kept when it matches');
  });
}

/** The revert data of a failed transaction (mined, as gas was given): replayed as a call on the state before its block. */
async function revertOf(local: LocalChain, hash: string): Promise<string | undefined> {
  let receipt: ethers.TransactionReceipt | null = null;
  await poll(async () => (receipt = await local.chain.provider.getTransactionReceipt(hash)) !== null);
  if (!receipt || (receipt as ethers.TransactionReceipt).status !== 0) return undefined; // it did not fail
  const block = (receipt as ethers.TransactionReceipt).blockNumber;
  const tx = await local.chain.provider.getTransaction(hash);
  try {
    await local.chain.provider.call({ from: tx!.from, to: tx!.to, data: tx!.data, blockTag: block - 1 });
    return undefined;
  } catch (e) {
    return (e as { data?: string }).data;
  }
}
