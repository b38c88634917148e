/**
 * The README's factory journey, end to end, as the engineer types it (README "A factory engineer"):
 * the stack is `npm start`'s composition in-process (main.ts startStack) with the admin key written to
 * DATA_DIR/admin-api-key; the CLI (`npm run cli --` = `tsx gateway/cli.ts`) and the meter
 * (`node examples/meter.mjs`) run as child processes; the HTTP calls are the README's curl calls made
 * with fetch. Differences from the README, so that it runs beside other tests:
 * - free ports and a temporary DATA_DIR (so the CLI gets DATA_DIR and ANVIL_PORT in its environment,
 *   which `npm start`'s defaults make unnecessary), windows of 3 s settled 1 s after they close, and
 *   the meter publishing every second instead of every 10;
 * - `node --import tsx gateway/cli.ts` instead of `npm run cli --` (npm adds nothing but its banner).
 * keygen → register facility (owner = keygen's address) and meter → a mistake (wrong unit) seen on the
 * feedback topic and in GET …/rejections → readings over several windows over real MQTT → a complete
 * window minted → `cli balance` shows the credits → `cli retire --relay` (the keygen'd owner has no
 * ether) → the retirement in GET /v1/retirements.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { loadConfig } from '../../domain/config.ts';
import { silentLogger } from '../../domain/logger.ts';
import { startStack } from '../../main.ts';
import { eventually } from '../helpers/eventually.ts';
import { tempDataDir } from './helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The variables the CLI and the meter read, cleared: a user's shell sets only what the README says. */
function shellEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['DATA_DIR', 'ANVIL_PORT', 'CHAIN_RPC_URL', 'CONTRACT_ADDRESS', 'HOLDER_KEY_FILE', 'HOLDER_PRIVATE_KEY', 'API_KEY', 'API_KEY_FILE', 'MQTT_URL', 'ADMIN_API_KEY']) delete env[k];
  return { ...env, ...extra };
}

interface Proc {
  child: ChildProcess;
  out: () => string;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function run(args: string[], env: Record<string, string>, timeoutMs = 120_000): Proc {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: shellEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  return { child, out: () => stdout, done };
}

const cli = (args: string[], env: Record<string, string>) => run(['--import', 'tsx', 'gateway/cli.ts', ...args], env).done;

t.test("the README's factory journey: keygen, register, publish over windows, credits, retire", async (t) => {
  const dataDir = tempDataDir(t);
  // npm start's composition; no ADMIN_API_KEY, so the gateway writes DATA_DIR/admin-api-key
  const config = loadConfig({}, { dataDir, httpPort: 0, mqttPort: 0, anvilPort: 0, windowSeconds: 3, graceSeconds: 1, oracleCron: '* * * * * *', simulatedDevices: 0, logLevel: 'silent' });
  const stack = await startStack(config, { logger: silentLogger });
  t.teardown(() => stack.close());
  const anvilPort = new URL(stack.rpcUrl!).port;
  const cliEnv = { DATA_DIR: dataDir, ANVIL_PORT: anvilPort };

  // KEY=$(cat data/admin-api-key)
  const KEY = fs.readFileSync(path.join(dataDir, 'admin-api-key'), 'utf8').trim();
  const http = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(`${stack.httpUrl}${route}`, {
      method,
      headers: { authorization: `Bearer ${KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  // npm run cli -- keygen --out plant-7.key
  const keyFile = path.join(dataDir, 'plant-7.key');
  const gen = await cli(['keygen', '--out', keyFile], cliEnv);
  t.equal(gen.code, 0, gen.stderr);
  const OWNER = /Facility owner address: (0x[0-9a-fA-F]{40})/.exec(gen.stdout)?.[1];
  t.ok(OWNER, 'keygen printed the owner address');

  // register the facility with that owner, and its meter (the password is shown once)
  const f = await http('POST', '/v1/facilities', { id: 'plant-7', name: 'Plant 7', owner: OWNER, baselineKgPerHour: '3600' });
  t.equal(f.status, 201, JSON.stringify(f.body));
  t.equal(f.body.owner, OWNER);
  const d = await http('POST', '/v1/facilities/plant-7/devices', { deviceId: 'meter-1' });
  t.equal(d.status, 201, `meter-1 registered (${d.status})`);
  const meterEnv = { MQTT_URL: stack.mqttUrl, FACILITY: 'plant-7', DEVICE: 'meter-1', DEVICE_PASSWORD: d.body.password as string, EVERY_SECONDS: '1' };

  // the usual mistake: a unit the platform does not know. The broker acknowledges (MQTT 3.1.1 has
  // no refusal), the meter hears why on its feedback topic, and the rejections log has it.
  const wrong = run(['examples/meter.mjs'], { ...meterEnv, UNIT: 'kwh' });
  t.teardown(() => wrong.child.kill('SIGKILL'));
  await eventually('the meter to hear the refusal on its feedback topic', () => /refused seq \d+: unknown_unit: /.test(wrong.out()), { timeoutMs: 60_000 });
  wrong.child.kill('SIGTERM');
  t.equal((await wrong.done).code, 0, 'the meter stops cleanly on SIGTERM');
  const rejections = await http('GET', '/v1/facilities/plant-7/rejections');
  t.equal(rejections.status, 200);
  t.match(rejections.body.items, [{ deviceId: 'meter-1', reason: 'unknown_unit' }], 'GET …/rejections names the reason');

  // the meter with the right unit, over several windows, until a complete window has minted
  const meter = run(['examples/meter.mjs'], meterEnv, 300_000);
  t.teardown(() => meter.child.kill('SIGKILL'));
  let minted: any;
  await eventually(
    'a complete window of plant-7 to mint',
    async () => {
      const s = await http('GET', '/v1/settlements?facilityId=plant-7');
      minted = (s.body.items as any[]).find((x) => x.complete && BigInt(x.mintedGrams) > 0n);
      return !!minted;
    },
    { timeoutMs: 240_000, everyMs: 500 },
  );
  meter.child.kill('SIGTERM');
  const meterRun = await meter.done;
  t.equal(meterRun.code, 0, meterRun.stderr);
  t.match(meterRun.stdout, /published seq \d+: [\d.]+ kWh \(acknowledged by the broker\)/);
  t.notMatch(meterRun.stdout, /refused/, 'nothing refused with the right unit');

  // the auditor's check of one of its readings (README "An auditor"): proof checked with the Merkle
  // library alone, its root compared with the chain's WindowSettled event read from the node
  const audit = await run(['examples/check-proof.mjs'], { FACILITY: 'plant-7', API: stack.httpUrl, DATA_DIR: dataDir, ANVIL_PORT: anvilPort }).done;
  t.equal(audit.code, 0, audit.stderr);
  t.match(audit.stdout, /^reading {4}meter-1 seq \d+ at /m);
  t.match(audit.stdout, /\nVERIFIED: the reading is in the evidence the chain committed to\n$/);
  // and it does refuse: against another contract address no settlement of the chain backs the proof
  const elsewhere = await run(['examples/check-proof.mjs'], { FACILITY: 'plant-7', API: stack.httpUrl, DATA_DIR: dataDir, ANVIL_PORT: anvilPort, CONTRACT: '0x' + '11'.repeat(20) }).done;
  t.equal(elsewhere.code, 1);
  t.match(elsewhere.stderr, /^NOT VERIFIED: the transaction has no WindowSettled of plant-7 for that window from the ledger 0x1111/);

  // npm run cli -- balance --key-file plant-7.key
  const bal = await cli(['balance', '--key-file', keyFile], cliEnv);
  t.equal(bal.code, 0, bal.stderr);
  const held = JSON.parse(bal.stdout);
  t.equal(held.address, OWNER);
  t.ok(BigInt(held.balanceGrams) >= BigInt(minted.mintedGrams), `the owner holds the minted credits (${held.balanceGrams} g)`);
  const onApi = await http('GET', '/v1/facilities/plant-7/balance');
  t.ok(BigInt(onApi.body.mintedGrams) >= BigInt(minted.mintedGrams), 'the API says the same');

  // API_KEY=$KEY npm run cli -- retire --key-file plant-7.key --relay http://127.0.0.1:3000 …
  // (no ether at the keygen'd address: the relay pays the gas)
  // npm run cli -- retire --batch-ids ID --amounts 1000 … (the batch id from `balance`)
  const batchId = held.batches.find((b: { facilityId: string }) => b.facilityId === 'plant-7').batchId;
  const retire = await cli(['retire', '--key-file', keyFile, '--relay', stack.httpUrl, '--batch-ids', batchId, '--amounts', '1000', '--beneficiary', 'City of X', '--reason', 'scope 2 2026'], { ...cliEnv, API_KEY: KEY });
  t.equal(retire.code, 0, retire.stderr);
  const retired = JSON.parse(retire.stdout);
  t.match(retired, { ok: true, via: 'relay', holder: OWNER, amountGrams: '1000', txHash: /^0x[0-9a-f]{64}$/ });

  // curl … "localhost:3000/v1/retirements?facilityId=plant-7"
  const list = await http('GET', '/v1/retirements?facilityId=plant-7');
  t.equal(list.status, 200);
  t.match(list.body.items, [{ account: OWNER, facilityIds: ['plant-7'], amountGrams: '1000', beneficiary: 'City of X', reason: 'scope 2 2026', txHash: retired.txHash }]);
  // (windows the meter published into still settle after it stopped, so the balance may grow meanwhile)
  t.equal((await http('GET', '/v1/facilities/plant-7/balance')).body.retiredGrams, '1000', 'the facility has retired what was asked');
});
