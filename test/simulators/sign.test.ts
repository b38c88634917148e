/**
 * Signing simulators (`--sign`): every reading a device sends carries `prev` and `sig` over the
 * SPEC's canonical line, which the platform's validator accepts and the device's key verifies, the
 * chain unbroken over what it sends; the `badsig` fault sends signatures that do not verify (and the
 * chain on the platform side breaks at the next reading); keys live in the state file and survive a
 * restart with the chain continuing; off by default.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { validatePayload } from '../../broker/validate.ts';
import { silentLogger } from '../../domain/logger.ts';
import type { Reading } from '../../domain/reading.ts';
import { checkChain, generateDeviceKey, lineHash, publicKeyOf, readingLine, verifyLine } from '../../domain/signature.ts';
import { DeviceSim, type Outgoing } from '../../simulators/device.ts';
import { NO_FAULTS, parseFaults, type FaultRates } from '../../simulators/faults.ts';
import { startFleet } from '../../simulators/fleet.ts';
import { PROFILES, countKinds, type DeviceKind } from '../../simulators/profiles.ts';
import { loadState } from '../../simulators/state.ts';
import { startBroker, type Received } from './helpers.ts';
import { eventually } from '../helpers/eventually.ts';

const T0 = Date.UTC(2026, 10, 23, 2, 0, 0);
const KEY = generateDeviceKey();

function sim(kind: DeviceKind, index: number, faults: Partial<FaultRates> = {}, signKey: string | null = KEY.privateKey): DeviceSim {
  return new DeviceSim(
    { facilityId: 'f1', deviceId: `f1-${kind}-${index}`, kind, index, profile: PROFILES.standard, facilitySeed: 7, facilityKinds: countKinds(['grid', 'gas', 'cems', 'solar']) },
    { seed: 'sign', faults: { ...NO_FAULTS, ...faults }, windowMs: 60_000, graceMs: 10_000, ...(signKey ? { signKey } : {}) },
  );
}

/** What the platform's validator makes of the messages (stateless). */
function validated(messages: Outgoing[], now: number): { readings: Reading[]; rejected: string[] } {
  const readings: Reading[] = [];
  const rejected: string[] = [];
  for (const m of messages) {
    const v = validatePayload(m.payload, { facilityId: 'f1', deviceId: m.deviceId, now });
    readings.push(...v.readings);
    rejected.push(...v.rejections.map((r) => r.reason));
  }
  return { readings, rejected };
}

t.test('every reading is signed over its canonical line; the chain is unbroken', async (t) => {
  // grid (two metrics a message, kWh/Wh/MWh by index), gas, cems (g/kg/t), iso and epoch ts
  for (const [kind, index] of [['grid', 0], ['grid', 1], ['grid', 2], ['gas', 2], ['cems', 4], ['solar', 5]] as [DeviceKind, number][]) {
    const s = sim(kind, index);
    const all: Reading[] = [];
    for (let i = 0; i < 20; i++) {
      const now = T0 + i * 1000;
      const out = s.tick(now);
      const v = validated(out.messages, now);
      t.same(v.rejected, [], `${kind}/${index}: accepted`);
      all.push(...v.readings);
    }
    t.equal(all.length, 20 * s.metrics.length);
    const bad = all.filter((r) => !verifyLine(KEY.publicKey, readingLine(r) as string, r.sig as string));
    t.same(bad.map((r) => r.seq), [], `${kind}/${index}: every signature verifies`);
    t.equal(all[0].prev, '', 'the first reading starts the chain');
    t.ok(checkChain(all.map((r) => ({ seq: r.seq, line: readingLine(r) as string, prev: r.prev as string }))).unbroken, `${kind}/${index}: chain unbroken`);
  }
});

t.test('signed payloads take the validator fast path form (key order seq, ts, metric, value, unit, reset?, prev, sig)', async (t) => {
  const m = sim('gas', 0).tick(T0).messages[0];
  t.match(m.payload.toString(), /^\{"seq":1,"ts":"[^"]+","metric":"natural_gas","value":[0-9.]+,"unit":"m3","prev":"","sig":"[A-Za-z0-9+/]{86}=="\}$/);
});

t.test('unsigned by default', async (t) => {
  const m = sim('gas', 0, {}, null).tick(T0).messages[0];
  t.notMatch(m.payload.toString(), /sig/);
});

t.test('badsig: a forged copy of the genuine readings, refused bad_signature; the genuine chain stays unbroken', async (t) => {
  const s = sim('gas', 0, { badsig: 0.3 });
  const stored: Reading[] = [];
  const forged: Reading[] = [];
  let badsig = 0;
  for (let i = 0; i < 60; i++) {
    const now = T0 + i * 1000;
    for (const m of s.tick(now).messages) {
      const [r] = validated([m], now).readings;
      const ok = verifyLine(KEY.publicKey, readingLine(r) as string, r.sig as string);
      if (m.faults.includes('badsig')) {
        badsig++;
        t.equal(m.expect, 'bad_signature');
        t.same(m.seqs, [], 'a forgery is not one of the device\'s own readings');
        t.notOk(ok, `forged seq ${r.seq}: its signature does not verify`);
        forged.push(r);
      } else {
        t.ok(ok, `seq ${r.seq}: verifies`);
        stored.push(r);
      }
    }
  }
  t.ok(badsig > 5, `${badsig} badsig messages`);
  for (const f of forged) t.ok(stored.some((g) => g.seq === f.seq && g.value !== f.value), `seq ${f.seq}: the genuine reading went out too, with another value`);
  t.equal(s.counts.badsig, badsig);
  t.equal(s.counts.expectedRejections.bad_signature, badsig);
  const chain = checkChain(stored.map((r) => ({ seq: r.seq, line: readingLine(r) as string, prev: r.prev as string })));
  t.ok(chain.unbroken, 'forgeries take nothing out of the genuine chain');
  t.throws(() => parseFaults('badsig=0.5,drop=0.6'), /must not exceed 1/);
});

function tmpDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sim-sign-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a signing fleet keeps its keys in the state file; the chain continues across a restart', async (t) => {
  const statePath = path.join(tmpDir(t), 'sim.json');
  const log: Received[] = [];
  const broker = await startBroker({ log });
  t.teardown(() => broker.close());
  const common = { url: `mqtt://127.0.0.1:${broker.port}`, devices: 2, rate: 20, seed: 'sg', statePath, sign: true, logger: silentLogger };
  await t.rejects(startFleet({ ...common, sign: false, faults: 'badsig=0.1' }), /badsig needs signing/);

  const run1 = await startFleet(common);
  t.teardown(() => run1.stop());
  await eventually('run 1', () => run1.stats().acked >= 20);
  await run1.stop();
  const st1 = loadState(statePath)!;
  const ids = Object.keys(st1.devices).sort();
  t.same(Object.keys(st1.keys ?? {}).sort(), ids, 'a key per device in the state file');

  const run2 = await startFleet(common);
  t.teardown(() => run2.stop());
  await eventually('run 2', () => run2.stats().acked >= 40);
  await run2.stop();
  const st2 = loadState(statePath)!;
  t.same(st2.keys, st1.keys, 'the same keys after a restart');

  for (const id of ids) {
    const pub = publicKeyOf(st1.keys![id]);
    const readings: Reading[] = [];
    for (const r of log) {
      if (!r.topic.endsWith(`/devices/${id}/readings`)) continue;
      readings.push(...validatePayload(r.payload, { facilityId: 'x', deviceId: id, now: Date.now() }).readings);
    }
    const unique = [...new Map(readings.map((r) => [r.seq, r])).values()];
    t.ok(unique.length >= 10, `${id}: ${unique.length} readings`);
    t.ok(unique.every((r) => verifyLine(pub, readingLine(r) as string, r.sig as string)), `${id}: all verify under the kept key`);
    const chain = checkChain(unique.map((r) => ({ seq: r.seq, line: readingLine(r) as string, prev: r.prev as string })));
    t.same(chain.breaks, [], `${id}: one chain over both runs`);
    t.equal(st2.devices[id].prev, lineHash(readingLine(unique.sort((a, b) => a.seq - b.seq).at(-1)!) as string), `${id}: the state holds the last line's hash`);
  }
});
