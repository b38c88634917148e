/**
 * The README's signed meter (examples/signed-meter.mjs, node:crypto only) against an in-process
 * broker: what it publishes passes the platform's validator, verifies under the public key it
 * printed, and chains (prev) from one reading to the next.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { validatePayload } from '../../broker/validate.ts';
import type { Reading } from '../../domain/reading.ts';
import { checkChain, readingLine, verifyLine } from '../../domain/signature.ts';
import { startBroker, type Received } from './helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

t.test('examples/signed-meter.mjs publishes readings the platform can verify', async (t) => {
  const log: Received[] = [];
  const broker = await startBroker({ log });
  t.teardown(() => broker.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'signed-meter-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = { ...process.env, MQTT_URL: `mqtt://127.0.0.1:${broker.port}`, FACILITY: 'plant-7', DEVICE: 'meter-1', DEVICE_PASSWORD: 'x', KEY_FILE: path.join(dir, 'k'), COUNT: '3', EVERY_SECONDS: '1' };
  const out = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['examples/signed-meter.mjs'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout });
    });
  });
  t.equal(out.code, 0, out.stdout);
  const key = /publicKey ([0-9a-f]{64})/.exec(out.stdout)?.[1];
  t.ok(key, 'printed its public key');
  t.equal(fs.statSync(path.join(dir, 'k')).mode & 0o777, 0o600, 'private key file 0600');
  const readings: Reading[] = [];
  for (const r of log.filter((x) => x.topic === 'facilities/plant-7/devices/meter-1/readings')) {
    const v = validatePayload(r.payload, { facilityId: 'plant-7', deviceId: 'meter-1', now: Date.now() });
    t.same(v.rejections, []);
    readings.push(...v.readings);
  }
  t.ok(readings.length >= 3, `${readings.length} readings`);
  for (const r of readings) t.ok(verifyLine(key as string, readingLine(r) as string, r.sig as string), `seq ${r.seq} verifies`);
  t.ok(checkChain(readings.map((r) => ({ seq: r.seq, line: readingLine(r) as string, prev: r.prev as string }))).unbroken, 'chained');
});

t.test("the README's signed-reading snippet signs what the platform verifies", async (t) => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const snippet = /### Signed readings and an offline audit[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1];
  t.ok(snippet, 'snippet found');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'readme-sig-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'snippet.mjs');
  const now = Date.now();
  fs.writeFileSync(
    file,
    `${snippet}\nconsole.log(JSON.stringify({ hexKey, out: [signed('m1', { seq: 1, ts: new Date(${now}).toISOString(), metric: 'electricity_import', value: 81234.5, unit: 'kWh' }), signed('m1', { seq: 2, ts: ${now}, metric: 'electricity_import', value: 81.3, unit: 'MWh' })] }));\n`,
  );
  const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.on('error', reject);
    child.on('close', () => resolve({ stdout }));
  });
  const { hexKey, out } = JSON.parse(stdout) as { hexKey: string; out: unknown[] };
  const readings = out.flatMap((o) => validatePayload(Buffer.from(JSON.stringify(o)), { facilityId: 'f', deviceId: 'm1', now }).readings);
  t.equal(readings.length, 2);
  for (const r of readings) t.ok(verifyLine(hexKey, readingLine(r) as string, r.sig as string), `seq ${r.seq} verifies`);
  t.ok(checkChain(readings.map((r) => ({ seq: r.seq, line: readingLine(r) as string, prev: r.prev as string }))).unbroken);
});
