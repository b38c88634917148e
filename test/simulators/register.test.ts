/**
 * Self-registration through the gateway HTTP API (a stand-in speaking the SPEC's paths): facilities
 * created with a suggested baseline (409 reused), devices created or, when they exist, given a fresh
 * secret by rotation; the credentials land in the state file and serve the next run; the progress
 * line shows the platform's rejection count from /metrics; API failures are clear errors.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ethers } from 'ethers';
import { pino } from 'pino';
import type { AuthenticateError } from 'aedes';
import { silentLogger } from '../../domain/logger.ts';
import { startFleet } from '../../simulators/fleet.ts';
import { rejectedCounter } from '../../simulators/register.ts';
import { loadState } from '../../simulators/state.ts';
import { startBroker } from './helpers.ts';
import { eventually } from '../helpers/eventually.ts';
import { tmpDir } from '../helpers/tmp.ts';

const KEY = 'admin-key-1';

interface FakeGateway {
  url: string;
  facilities: Map<string, Record<string, unknown>>;
  passwords: Map<string, string>;
  kinds: Map<string, string>;
  calls: string[];
  rejected: number;
}

async function startGateway(t: Test): Promise<FakeGateway> {
  const g: FakeGateway = { url: '', facilities: new Map(), passwords: new Map(), kinds: new Map(), calls: [], rejected: 0 };
  let n = 0;
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      g.calls.push(`${req.method} ${req.url}`);
      if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        // like prom-client: a labelled counter has no sample line before its first increment
        const head = '# HELP mrv_readings_rejected_total x\n# TYPE mrv_readings_rejected_total counter\n';
        res.end(g.rejected === 0 ? head : `${head}mrv_readings_rejected_total{reason="invalid_json"} ${g.rejected}\nmrv_readings_rejected_total{reason="future_ts"} 1\n`);
        return;
      }
      if (req.headers.authorization !== `Bearer ${KEY}`) return send(401, { error: { code: 'UNAUTHENTICATED', message: 'missing or invalid API key' } });
      const body = text ? JSON.parse(text) : {};
      let m: RegExpExecArray | null;
      if (req.method === 'POST' && req.url === '/v1/facilities') {
        if (g.facilities.has(body.id)) return send(409, { error: { code: 'FACILITY_EXISTS', message: 'exists' } });
        g.facilities.set(body.id, body);
        return send(201, body);
      }
      if (req.method === 'GET' && (m = /^\/v1\/facilities\/([^/]+)$/.exec(req.url ?? '')) && g.facilities.has(m[1])) return send(200, g.facilities.get(m[1]));
      if (req.method === 'POST' && (m = /^\/v1\/facilities\/([^/]+)\/devices$/.exec(req.url ?? ''))) {
        if (g.passwords.has(body.deviceId)) return send(409, { error: { code: 'DEVICE_EXISTS', message: 'exists' } });
        const password = `pw-${++n}`;
        g.passwords.set(body.deviceId, password);
        g.kinds.set(body.deviceId, body.kind);
        return send(201, { deviceId: body.deviceId, facilityId: m[1], username: body.deviceId, password });
      }
      if (req.method === 'PATCH' && (m = /^\/v1\/devices\/([^/]+)$/.exec(req.url ?? '')) && body.rotateSecret === true) {
        const password = `pw-${++n}`;
        g.passwords.set(m[1], password);
        return send(200, { deviceId: m[1], status: 'active', password });
      }
      send(404, { error: { code: 'NOT_FOUND', message: 'no route' } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  g.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return g;
}

t.test('registers facilities and devices, rotates secrets of existing devices, reuses saved credentials', async (t) => {
  const gw = await startGateway(t);
  const broker = await startBroker({
    aedes: {
      authenticate: (client, username, password, done) => {
        if (username && client.id === username && password?.toString() === gw.passwords.get(username)) return done(null, true);
        const err = new Error('bad') as AuthenticateError;
        err.returnCode = 4;
        done(err, false);
      },
    },
  });
  t.teardown(() => broker.close());
  const dir = tmpDir(t, 'sim-reg-');
  const statePath = path.join(dir, 'state.json');
  const api = { url: gw.url, key: KEY };
  const lines: string[] = [];
  const common = { url: `mqtt://127.0.0.1:${broker.port}`, devices: 6, rate: 20, seed: 'reg', statePath, windowSeconds: 30, logger: silentLogger };

  const run1 = await startFleet({ ...common, api, progress: { write: (s: string) => lines.push(s) }, progressIntervalMs: 50, rejectedCount: rejectedCounter(api) });
  t.teardown(() => run1.stop());
  t.same([...gw.facilities.keys()], ['sim-f1', 'sim-f2']);
  const [f1, f2] = [gw.facilities.get('sim-f1')!, gw.facilities.get('sim-f2')!];
  t.match(f1, { id: 'sim-f1', name: /efficient/, owner: /^0x[0-9a-f]{40}$/, baselineKgPerHour: /^\d+\.\d{3}$/ });
  t.match(f2, { id: 'sim-f2', name: /heavy/ });
  t.ok(Number(f1.baselineKgPerHour) > 0 && Number(f2.baselineKgPerHour) > 0);
  t.same([...gw.kinds.entries()], [
    ['sim-f1-grid', 'grid'],
    ['sim-f1-solar', 'solar'],
    ['sim-f1-gas', 'gas'],
    ['sim-f2-grid', 'grid'],
    ['sim-f2-gas', 'gas'],
    ['sim-f2-cems', 'cems'],
  ]);
  t.equal(run1.stats().connected, 6, 'every device connected with its issued password');
  await eventually('run 1 acks', () => run1.stats().acked >= 20);
  t.equal(run1.stats().rejected, 0, 'no sample yet counts as 0');
  gw.rejected = 7; // the platform refuses some readings meanwhile (7 + 1)
  await eventually('rejections from /metrics', () => run1.stats().rejected === 8);
  const s1 = await run1.stop();
  t.equal(s1.rejected, 8, 'counted from when the run started');
  t.ok(lines.some((l) => /rejected 8/.test(l)));
  const saved = loadState(statePath)!.credentials!;
  t.same(saved.map((c) => [c.deviceId, c.password]), [...gw.passwords.entries()]);

  // run 2: everything exists: 409 for the facilities, secrets rotated
  const before = new Map(gw.passwords);
  const run2 = await startFleet({ ...common, api });
  t.teardown(() => run2.stop());
  t.equal(gw.calls.filter((c) => c.startsWith('PATCH /v1/devices/')).length, 6, 'six rotations');
  for (const [id, pw] of gw.passwords) t.not(pw, before.get(id), `${id} has a fresh secret`);
  t.equal(run2.stats().connected, 6);
  await run2.stop();

  // run 3: no --api, no --credentials: the credentials saved by run 2 are used
  const calls = gw.calls.length;
  const run3 = await startFleet(common);
  t.teardown(() => run3.stop());
  t.equal(run3.stats().connected, 6, 'connected with the saved credentials');
  t.equal(gw.calls.length, calls, 'no API call');
  await run3.stop();
});

t.test('API failures are clear errors', async (t) => {
  const gw = await startGateway(t);
  const common = { url: 'mqtt://127.0.0.1:1', devices: 1, statePath: null, logger: silentLogger };
  await t.rejects(startFleet({ ...common, api: { url: gw.url, key: 'wrong' } }), { code: 'SIM_API_FAILED', message: /refused the API key: 401 UNAUTHENTICATED/ });
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as { port: number }).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  await t.rejects(startFleet({ ...common, api: { url: `http://127.0.0.1:${port}`, key: KEY } }), {
    code: 'SIM_API_FAILED',
    message: new RegExp(`cannot reach the gateway at http://127.0.0.1:${port}: ECONNREFUSED`),
  });
  await t.rejects(startFleet({ ...common, api: { url: 'ftp://x', key: KEY } }), { code: 'SIM_USAGE', message: /bad gateway URL/ });
});

t.test('owner keys kept in ownerKeyDir: facilities owned by a key made once (0600) and reused by the next run', async (t) => {
  const gw = await startGateway(t);
  const broker = await startBroker({ aedes: {} });
  t.teardown(() => broker.close());
  const dir = tmpDir(t, 'sim-keys-');
  const ownerKeyDir = path.join(dir, 'keys');
  const warnings: unknown[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
  const common = { url: `mqtt://127.0.0.1:${broker.port}`, devices: 2, facilities: 2, rate: 5, seed: 'keys', statePath: null, windowSeconds: 30, logger, api: { url: gw.url, key: KEY }, ownerKeyDir };

  const run1 = await startFleet(common);
  await run1.stop();
  const owners = new Map<string, string>();
  for (const id of ['sim-f1', 'sim-f2']) {
    const file = path.join(ownerKeyDir, `${id}.key`);
    t.equal(fs.statSync(file).mode & 0o777, 0o600, `${id}.key is owner-only`);
    const address = new ethers.Wallet(fs.readFileSync(file, 'utf8').trim()).address;
    t.equal(gw.facilities.get(id)!.owner, address, `${id} is owned by its key file's address`);
    t.equal(run1.facilities.find((f) => f.facilityId === id)!.ownerKeyFile, file);
    owners.set(id, address);
  }
  t.equal(fs.statSync(ownerKeyDir).mode & 0o777, 0o700);

  // a second run (facilities exist: 409) reuses the same keys and says nothing about owners
  const before = fs.readFileSync(path.join(ownerKeyDir, 'sim-f1.key'), 'utf8');
  const run2 = await startFleet(common);
  await run2.stop();
  t.equal(fs.readFileSync(path.join(ownerKeyDir, 'sim-f1.key'), 'utf8'), before, 'the key file is not replaced');
  t.equal(run2.facilities[0].owner, owners.get('sim-f1'));
  t.same(warnings, []);

  // a facility registered earlier with another owner: warned about, the plan shows the real owner
  gw.facilities.get('sim-f2')!.owner = '0x' + '12'.repeat(20);
  const run3 = await startFleet(common);
  await run3.stop();
  t.match(warnings, [{ facilityId: 'sim-f2', owner: '0x' + '12'.repeat(20), keyAddress: owners.get('sim-f2') }]);
  t.equal(run3.facilities[1].owner, '0x' + '12'.repeat(20));
  t.equal(run3.facilities[1].ownerKeyFile, undefined);

  // an explicit owner wins over the keys
  const explicit = '0x' + 'ab'.repeat(20);
  gw.facilities.clear();
  const run4 = await startFleet({ ...common, owner: explicit });
  await run4.stop();
  t.equal(gw.facilities.get('sim-f1')!.owner, explicit);

  // a key file that holds no key is an error, not overwritten
  gw.facilities.clear();
  fs.writeFileSync(path.join(ownerKeyDir, 'sim-f1.key'), 'not a key\n', { mode: 0o600 });
  await t.rejects(startFleet(common), /sim-f1\.key does not hold a private key/);
  t.equal(fs.readFileSync(path.join(ownerKeyDir, 'sim-f1.key'), 'utf8'), 'not a key\n');
});
