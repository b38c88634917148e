/**
 * The offline audit of a bundle (audit/audit.ts): a valid bundle with signed readings passes; one
 * value changed, one reading dropped, one signature from another key, a key swapped: each is caught
 * with its reason. The chain part against a ChainView that also serves device keys
 * (test/audit/cli-anvil.test.ts runs the chain part against a real ledger on anvil, keys included).
 */
import t from 'tap';
import { auditBundle, auditOffline, formatReport, type ChainView, type FindingReason } from '../../audit/audit.ts';
import { parseBundle } from '../../audit/bundle.ts';
import { generateDeviceKey, lineHash, signLine, readingLine } from '../../domain/signature.ts';
import { chainContext, toReading } from '../../audit/bundle.ts';
import { copy, fixture, signChain, T0 } from '../helpers/audit-fixture.ts';
import { buildEvidence } from '../../oracle/evidence.ts';
import { METHODOLOGY_V2, settleWindow } from '../../oracle/methodology.ts';

const F = fixture();
const OTHER = generateDeviceKey();
const reasons = (r: { findings: { reason: FindingReason }[] }) => [...new Set(r.findings.map((f) => f.reason))].sort();

t.test('a valid bundle passes the offline audit and survives JSON', async (t) => {
  const r = auditOffline(parseBundle(JSON.stringify(F.bundle)));
  t.same(r.findings, []);
  t.ok(r.ok);
  t.same(r.recomputed, { netGrams: '3595155', evidenceRoot: F.root, complete: true });
  t.same(r.devices, [
    { deviceId: 'm1', signed: true, readings: 2, signatures: 2, chainUnbroken: true },
    { deviceId: 'g1', signed: false, readings: 1, signatures: 0 },
  ]);
  t.match(formatReport(r), /devices {6}2 \(1 signed, 1\/1 chains unbroken\)/);
});

t.test('one value changed', async (t) => {
  // seq 2 was signed as sent ("1002.50" kWh): the stored value no longer matches what was signed.
  const b = copy(F.bundle);
  b.devices[0].readings[0].value = '1003';
  const r = auditOffline(b);
  t.notOk(r.ok);
  t.same(reasons(r), ['record_mismatch', 'value_mismatch']);
  t.match(r.findings.find((f) => f.reason === 'value_mismatch'), { deviceId: 'm1', seq: 2 });
  // Changed along with the text it was signed as: its signature breaks, and so does the next link.
  b.devices[0].readings[0].sentValue = '1003';
  t.same(reasons(auditOffline(b)), ['bad_signature', 'chain_broken', 'record_mismatch']);
  // An unsigned device's value changed: only the recomputation shows it.
  const g = copy(F.bundle);
  g.devices[1].readings[0].value = '9.5';
  t.same(reasons(auditOffline(g)), ['record_mismatch']);
});

t.test('one reading dropped', async (t) => {
  const b = copy(F.bundle);
  b.devices[0].readings.splice(0, 1); // seq 2: the register total is the same, the chain is not
  const r = auditOffline(b);
  t.same(reasons(r), ['chain_broken', 'record_mismatch']);
  t.match(r.findings.find((f) => f.reason === 'chain_broken'), { deviceId: 'm1', seq: 3, detail: /omitted/ });
  t.equal(r.devices[0].chainUnbroken, false);
  t.match(formatReport(r), /chain BROKEN/);
});

t.test('one signature from another key', async (t) => {
  const b = copy(F.bundle);
  const r2 = b.devices[0].readings[0];
  r2.sig = signLine(OTHER.privateKey, readingLine(toReading('F', 'm1', r2)) as string);
  const r = auditOffline(b);
  // The evidence commits to each signature (mrv-signed-3): the root no longer matches either.
  t.same(reasons(r), ['bad_signature', 'record_mismatch']);
  t.match(r.findings[0], { deviceId: 'm1', seq: 2 });
});

t.test('a key swapped', async (t) => {
  // Only the key: no reading verifies under it.
  const b = copy(F.bundle);
  b.devices[0].keys[0].publicKey = OTHER.publicKey;
  const r = auditOffline(b);
  t.same(reasons(r), ['bad_signature']);
  t.equal(r.findings.length, 3, 'both used readings and the chain context');
  // Key and signatures swapped together (a platform re-signing with a key of its own): the bundle is
  // self-consistent, only the keys the ledger recorded catch it.
  const forged = fixture(OTHER).bundle;
  t.ok(auditOffline(forged).ok, 'self-consistent offline');
  const view: ChainView = {
    async settlement() {
      return { windowEnd: T0 + 3_600_000, netGrams: F.netGrams, evidenceRoot: F.root };
    },
    async deviceKeys(_f, deviceId) {
      return deviceId === 'm1' ? [F.key.publicKey] : [];
    },
  };
  const onChain = await auditBundle(forged, view);
  // The evidence root commits to the signatures, so the chain's root differs too.
  t.same(reasons(onChain), ['chain_mismatch', 'key_not_on_chain']);
  t.ok((await auditBundle(F.bundle, view)).ok, 'the real bundle passes the same chain');
  // The key and the signatures withheld: the device presented as unsigned (its values then unchecked).
  const stripped = copy(F.bundle);
  stripped.devices[0].keys = [];
  for (const r of [...stripped.devices[0].readings, ...stripped.devices[0].context]) {
    delete r.sig;
    delete r.prev;
  }
  // The recorded root committed to the signatures: stripping them shows offline already.
  t.same(reasons(auditOffline(stripped)), ['record_mismatch'], 'the root committed to the signatures');
  const withheld = await auditBundle(stripped, view);
  t.same(reasons(withheld), ['chain_mismatch', 'key_missing', 'record_mismatch']);
  t.match(withheld.findings.find((f) => f.reason === 'key_missing'), { deviceId: 'm1' });
});

t.test('other findings: unsigned reading of a signed device, broken factors, missing settlement', async (t) => {
  const b = copy(F.bundle);
  delete b.devices[0].readings[1].sig;
  delete b.devices[0].readings[1].prev;
  t.same(reasons(auditOffline(b)), ['record_mismatch', 'unsigned']);
  const c = copy(F.bundle);
  c.settlement.complete = false;
  t.same(reasons(auditOffline(c)), ['record_mismatch'], 'completeness differs');
  const f = copy(F.bundle);
  f.factors.gridKgPerKwh = '0.5';
  t.ok(reasons(auditOffline(f)).includes('factors_hash'));
  const none: ChainView = { settlement: async () => undefined, deviceKeys: async () => undefined };
  const r = await auditBundle(F.bundle, none);
  t.same(reasons(r), ['chain_mismatch']);
  t.match(r.chain, { checked: true, keysOnChain: false });
  const offline = await auditBundle(F.bundle);
  t.notOk(offline.ok, 'not verified without the chain');
  t.match(formatReport(offline), /NOT VERIFIED/);
  t.throws(() => parseBundle('{"format":"x"}'), { code: 'BUNDLE_INVALID' });
  t.throws(() => parseBundle('nope'), { code: 'BUNDLE_INVALID' });
  // The chain context is optional for the chain's first link only when it starts the chain.
  const key = generateDeviceKey();
  t.equal(signChain(key, [{ facilityId: 'F', deviceId: 'x', seq: 1, ts: 1, metric: 'natural_gas', value: '1', unit: 'm3', reset: false, receivedAt: 0 }])[0].prev, '');
});

t.test('every one change to a signed reading (used or chain context) is caught', async (t) => {
  const fields = ['value', 'sentValue', 'sentUnit', 'ts', 'seq', 'reset', 'prev', 'sig', 'metric', 'drop'] as const;
  const missed: string[] = [];
  for (const which of [0, 1, 2])
    for (const field of fields) {
      const b = copy(F.bundle);
      const dev = b.devices[0];
      const list = which < 2 ? dev.readings : dev.context;
      const r = list[which < 2 ? which : 0];
      switch (field) {
        case 'value': r.value = `${r.value}1`; break;
        case 'sentValue': r.sentValue = `${r.sentValue ?? r.value}1`; break;
        case 'sentUnit': r.sentUnit = (r.sentUnit ?? r.unit) === 'Wh' ? 'MWh' : 'Wh'; break;
        case 'ts': r.ts += 1; break;
        case 'seq': r.seq += 100; break;
        case 'reset': r.reset = !r.reset; break;
        case 'prev': r.prev = lineHash(`${r.prev}x`); break;
        case 'sig': r.sig = signLine(OTHER.privateKey, readingLine(toReading('F', 'm1', r)) as string); break;
        case 'metric': r.metric = 'electricity_export'; break;
        case 'drop': list.splice(which < 2 ? which : 0, 1); break;
      }
      if (auditOffline(b).ok) missed.push(`${which < 2 ? `reading ${which}` : 'context'}: ${field}`);
    }
  t.same(missed, [], '30 tampered bundles, each caught');
});

t.test('chainContext: the predecessors by seq that a settlement did not use', async (t) => {
  const m1 = F.input.devices[0];
  const stored = [...F.bundle.devices[0].context, ...F.bundle.devices[0].readings].map((r) => toReading('F', 'm1', r));
  const below = (seq: number) => [...stored].reverse().find((r) => r.seq < seq);
  const ctx = await chainContext(m1.readings, below);
  t.same(ctx.map((r) => r.seq), [1], 'seq 1, the previous settlement\'s last reading');
  t.same(await chainContext([], below), []);
});

t.test('a bundle of an mrv-cursor-2 settlement is recomputed with that version (8-field leaves, no chain rule)', async (t) => {
  const v2 = settleWindow({ ...F.input, methodologyVersion: METHODOLOGY_V2 });
  const b = copy(F.bundle);
  b.methodologyVersion = METHODOLOGY_V2;
  b.settlement.evidenceRoot = buildEvidence(v2).root;
  t.not(b.settlement.evidenceRoot, F.root, 'the versions commit to different leaves');
  const r = auditOffline(b);
  t.same(r.findings, []);
  t.equal(r.recomputed?.evidenceRoot, b.settlement.evidenceRoot);
  // Under the current version's root, the old version's recomputation does not match.
  b.settlement.evidenceRoot = F.root;
  t.same(reasons(auditOffline(b)), ['record_mismatch']);
  b.methodologyVersion = 'mrv-cursor-1';
  t.same(reasons(auditOffline(b)), ['methodology_version']);
});
