/**
 * The evidence tree: the documented leaf format (docs/METHODOLOGY.md) rebuilt independently with the
 * Merkle package alone gives the same root; the root is order-independent and changes with any input;
 * inclusion proofs verify against it.
 */
import t from 'tap';
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import type { Reading } from '../../domain/reading.ts';
import { canonicalHash, canonicalJson } from '../../oracle/canonical.ts';
import { AbiCoder, hexlify } from 'ethers';
import { buildEvidence, buildTree, encodeLeaf, LEAF_ENCODING, LEAF_ENCODING_V2, readingProof, verifyReadingProof, type EvidenceLeaf } from '../../oracle/evidence.ts';
import { applyFactors } from '../../oracle/factors.ts';
import { METHODOLOGY_V2, METHODOLOGY_VERSION, settleWindow, type WindowInput } from '../../oracle/methodology.ts';
import { generateDeviceKey } from '../../domain/signature.ts';
import { signChain } from '../helpers/audit-fixture.ts';

const read = (seq: number, ts: number, value: string, metric: Reading['metric'] = 'electricity_import'): Reading => ({
  facilityId: 'F',
  deviceId: 'd1',
  seq,
  ts,
  metric,
  value,
  unit: metric === 'co2_direct' ? 'kg' : 'kWh',
  reset: false,
  receivedAt: ts,
});

// The SPEC's worked example, plus a late co2 reading (seq 2, arrived after the previous settlement).
const example: WindowInput = {
  facilityId: 'F',
  window: { start: 10_000, end: 20_000 },
  devices: [
    {
      deviceId: 'd1',
      mark: { maxSeq: 3, late: 0 },
      prev: { mark: { maxSeq: 1, late: 0 }, before: 10_000 },
      startCursors: [{ metric: 'electricity_import', seq: 1, ts: 5_000, value: '1000' }],
      readings: [read(3, 15_000, '1005'), read(2, 9_000, '0.5', 'co2_direct')],
      coverage: { before: { seq: 2, ts: 9_000 }, lastIn: { seq: 3, ts: 15_000 }, after: false, between: 1, interval: false },
      reportingIntervalSeconds: 60,
    },
  ],
  factors: applyFactors(0, {}),
  baselineKgPerHour: '3600',
};

t.test('the documented leaves, rebuilt by hand with the Merkle package alone, give the same root', async (t) => {
  for (const version of [METHODOLOGY_V2, METHODOLOGY_VERSION]) {
    const v2 = version === METHODOLOGY_V2;
    const result = settleWindow({ ...example, methodologyVersion: version });
    t.equal(result.methodologyVersion, version);
    const e = buildEvidence(result);
  // What an auditor writes from docs/METHODOLOGY.md, without this repository's code:
  const factorsBody = { version: 'v1', base: 'v1', gridKgPerKwh: '0.5366', gasKgPerM3: '2.162', overrides: [] };
  const factorsJson = '{"base":"v1","gasKgPerM3":"2.162","gridKgPerKwh":"0.5366","overrides":[],"version":"v1"}';
  t.equal(canonicalJson(factorsBody), factorsJson);
  t.equal(canonicalHash(factorsBody), result.factors.hash);
  // 5 kWh * 0.5366 + 0.5 kg = 3.183 kg; net = floor((10 - 3.183) * 1000) = 6817
  const totals = '{"co2_direct":"0.5","electricity_export":"0","electricity_import":"5","natural_gas":"0","renewable_generation":"0"}';
  const byHand = [
    ['header', 'F', '10000', '20000', version, '3600', false, false],
    ['factors', 'v1', '0', '0', result.factors.hash, factorsJson, false, false],
    ['result', 'F', '6817', '6817', '3.183', totals, true, false],
    [
      'device',
      'd1',
      '3',
      '0',
      '{"before":10000,"late":0,"maxSeq":1}',
      '{"after":false,"before":{"seq":2,"ts":9000},"between":1,"intervalDevice":true,"lastIn":{"seq":3,"ts":15000},"reportingIntervalSeconds":60,"status":"ok"}',
      true,
      true,
    ],
    ['cursor_start', 'd1', '1', '5000', 'electricity_import', '1000', false, false],
    ['cursor_end', 'd1', '3', '15000', 'electricity_import', '1005', false, false],
    ['reading', 'd1', '2', '9000', 'co2_direct', '0.5', false, true],
    ['reading', 'd1', '3', '15000', 'electricity_import', '1005', false, false],
  ];
  // mrv-cursor-2: 8 fields (the root of every settlement recorded before signatures is unchanged);
  // mrv-signed-3: a ninth, the reading's signature ("" when unsigned and in other leaves).
  const types = ['string', 'string', 'int256', 'int256', 'string', 'string', 'bool', 'bool', ...(v2 ? [] : ['string'])];
  const tree = StandardMerkleTree.of(v2 ? byHand : byHand.map((l) => [...l, '']), types);
  t.equal(e.root, tree.root, version);
  t.same(v2 ? LEAF_ENCODING_V2 : LEAF_ENCODING, types);
  t.equal(e.leaves.length, 8);
  }
  t.equal(buildEvidence(settleWindow(example)).root, buildEvidence(settleWindow({ ...example, methodologyVersion: METHODOLOGY_VERSION })).root, 'the current version by default');
});

t.test('mrv-signed-3: signatures in reading leaves, a chain leaf per signed device, a broken chain of an interval device is incomplete', async (t) => {
  const key = generateDeviceKey();
  const base = { facilityId: 'F', deviceId: 'c1', unit: 'kg', reset: false, receivedAt: 0, metric: 'co2_direct' as const };
  const [s1, s2, s3, s4] = signChain(key, [
    { ...base, seq: 1, ts: 9_000, value: '1' },
    { ...base, seq: 2, ts: 11_000, value: '2' },
    { ...base, seq: 3, ts: 15_000, value: '3' },
    { ...base, seq: 4, ts: 19_000, value: '4' },
  ]);
  const device = (readings: Reading[], between: number, chainContext?: Reading[]): WindowInput => ({
    ...example,
    baselineKgPerHour: '36000',
    devices: [
      {
        deviceId: 'c1',
        intervalDevice: true,
        mark: { maxSeq: 4, late: 0 },
        prev: { mark: { maxSeq: 1, late: 0 }, before: 10_000 },
        startCursors: [],
        readings,
        coverage: { before: { seq: 1, ts: 9_000 }, lastIn: { seq: 4, ts: 19_000 }, after: false, between, interval: true },
        reportingIntervalSeconds: 1,
        ...(chainContext ? { chainContext } : {}),
      },
    ],
  });
  const ok = settleWindow(device([s2, s3, s4], 3, [s1]));
  t.equal(ok.complete, true);
  t.same(ok.devices[0].chain, { signed: 3, unbroken: true, breaks: [], starts: [], context: [1] });
  const e = buildEvidence(ok);
  t.same(
    e.leaves.filter((l) => l[0] === 'chain'),
    [['chain', 'c1', '3', '0', '{"breaks":[],"context":[1],"starts":[]}', '', true, false, '']],
  );
  const p = readingProof(e, 'c1', 3)!;
  t.equal(p.leaf[8], s3.sig, 'the reading leaf carries its signature');
  t.same(p.leafEncoding, LEAF_ENCODING);
  t.ok(StandardMerkleTree.verify(e.root, p.leafEncoding, p.leaf, p.proof));
  // Another signature over the same reading changes the root.
  const resigned = { ...s3, sig: signChain(generateDeviceKey(), [s3], s3.prev)[0].sig };
  t.not(buildEvidence(settleWindow(device([s2, resigned, s4], 3, [s1]))).root, e.root);
  // Without its predecessor (seq 1) the chain cannot be followed into the window: broken, incomplete.
  const noContext = settleWindow(device([s2, s3, s4], 3));
  t.same(noContext.devices[0].chain?.breaks, [{ seq: 2, reason: 'prev_missing' }]);
  t.equal(noContext.devices[0].status, 'chain_broken');
  t.equal(noContext.complete, false);
  t.equal(noContext.netGrams, 0n, 'net capped at 0');
  t.ok(ok.netGrams > 0n);
  // The seq-gap rule alone would not see a dropped reading whose gap the store's counts hide.
  const dropped = settleWindow(device([s2, s4], 3, [s1]));
  t.same(dropped.devices[0].chain?.breaks, [{ seq: 4, reason: 'prev_missing' }]);
  t.equal(dropped.complete, false);
  // mrv-cursor-2 has no chain rule: the same inputs are complete there.
  const old = settleWindow({ ...device([s2, s4], 3, [s1]), methodologyVersion: METHODOLOGY_V2 });
  t.equal(old.complete, true);
  t.equal(old.devices[0].chain, undefined);
  t.throws(() => settleWindow({ ...example, methodologyVersion: 'mrv-cursor-1' }), TypeError);
});

t.test('the root does not depend on input order and changes with any input', async (t) => {
  const root = buildEvidence(settleWindow(example)).root;
  const reordered = { ...example, devices: [{ ...example.devices[0], readings: [...example.devices[0].readings].reverse() }] };
  t.equal(buildEvidence(settleWindow(reordered)).root, root);
  const variants: [string, WindowInput][] = [
    ['baseline', { ...example, baselineKgPerHour: '3601' }],
    ['factor', { ...example, factors: applyFactors(0, { gridFactorKgPerKwh: '0.5367' }) }],
    ['visibility mark (seq)', { ...example, devices: [{ ...example.devices[0], mark: { maxSeq: 4, late: 0 } }] }],
    ['visibility mark (late arrivals)', { ...example, devices: [{ ...example.devices[0], mark: { maxSeq: 3, late: 1 } }] }],
    ['previous mark', { ...example, devices: [{ ...example.devices[0], prev: { mark: { maxSeq: 1, late: 1 }, before: 10_000 } }] }],
    ['coverage facts', { ...example, devices: [{ ...example.devices[0], coverage: { ...example.devices[0].coverage, after: true } }] }],
    ['reporting interval', { ...example, devices: [{ ...example.devices[0], reportingIntervalSeconds: 61 }] }],
    ['decommissioning', { ...example, devices: [{ ...example.devices[0], decommissioned: { at: 10_000, reason: 'removed' } }] }],
    ['reading value', { ...example, devices: [{ ...example.devices[0], readings: [read(3, 15_000, '1005.001'), read(2, 9_000, '0.5', 'co2_direct')] }] }],
    ['reading ts', { ...example, devices: [{ ...example.devices[0], readings: [read(3, 15_001, '1005'), read(2, 9_000, '0.5', 'co2_direct')] }] }],
    ['start cursor', { ...example, devices: [{ ...example.devices[0], startCursors: [{ metric: 'electricity_import', seq: 1, ts: 5_000, value: '999' }] }] }],
    ['window', { ...example, window: { start: 20_000, end: 30_000 }, devices: [{ ...example.devices[0], readings: [read(3, 25_000, '1005')] }] }],
  ];
  for (const [what, input] of variants) t.not(buildEvidence(settleWindow(input)).root, root, what);
});

t.test('inclusion proofs for readings', async (t) => {
  const e = buildEvidence(settleWindow(example));
  for (const seq of [2, 3]) {
    const p = readingProof(e, 'd1', seq);
    t.ok(p, `proof for seq ${seq}`);
    t.equal(verifyReadingProof(e.root, p!.leaf, p!.proof), true);
    t.equal(StandardMerkleTree.verify(e.root, p!.leafEncoding, p!.leaf, p!.proof), true);
    // A forged value does not verify with the same proof.
    const forged: EvidenceLeaf = [...p!.leaf];
    forged[5] = '9999';
    t.equal(verifyReadingProof(e.root, forged, p!.proof), false);
  }
  t.same(readingProof(e, 'd1', 2)?.leaf.slice(6, 8), [false, true], 'seq 2 is flagged late');
  t.equal(readingProof(e, 'd1', 1), undefined, 'the start cursor reading is not a consumed reading of this window');
  t.equal(readingProof(e, 'd2', 2), undefined);
});

t.test('the direct leaf encoder and tree match ethers AbiCoder and StandardMerkleTree exactly', async (t) => {
  // Deterministic pseudo-random leaves: empty, ASCII, multi-byte UTF-8, strings of 31/32/33/64/65 bytes,
  // negative and extreme int256 values, both booleans.
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const texts = ['', 'd1', 'électricité ⚡ 電力', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(33), 'w'.repeat(64), 'v'.repeat(65), '{"a":"1"}'];
  const ints = ['0', '1', '-1', '1767225600000', '-35923', (2n ** 255n - 1n).toString(), (-(2n ** 255n)).toString(), '9007199254740991'];
  const coder = AbiCoder.defaultAbiCoder();
  for (let size = 1; size <= 40; size += 13) for (const ENC of [LEAF_ENCODING_V2, LEAF_ENCODING]) {
    const leaves: EvidenceLeaf[] = Array.from({ length: size }, (): EvidenceLeaf => {
      const l: EvidenceLeaf = [
      texts[rnd(texts.length)],
      texts[rnd(texts.length)],
      ints[rnd(ints.length)],
      ints[rnd(ints.length)],
      texts[rnd(texts.length)],
      texts[rnd(texts.length)],
      rnd(2) === 1,
      rnd(2) === 1,
      ];
      return ENC.length === 9 ? [...l, texts[rnd(texts.length)]] as EvidenceLeaf : l;
    });
    for (const l of leaves) t.equal(hexlify(encodeLeaf(l)), coder.encode(ENC, l), 'same bytes as AbiCoder');
    const mine = buildTree(leaves);
    const theirs = StandardMerkleTree.of(leaves, ENC);
    t.equal(mine.root, theirs.root, `root of ${size} leaves`);
    for (let i = 0; i < size; i++) {
      // readingProof looks leaves up by (kind, deviceId, seq): relabel leaf i in the lookup list only.
      const lookup = mine.leaves.map((l, j): EvidenceLeaf => (j === i ? ['reading', 'P', String(i), l[3], l[4], l[5], l[6], l[7]] : l));
      // (the proof comes from the tree; only the lookup's kind/id/seq matter)
      t.same(readingProof({ ...mine, leaves: lookup }, 'P', i)?.proof, theirs.getProof(leaves[i]), `proof ${i} of ${size}`);
    }
  }
  t.throws(() => encodeLeaf(['a', 'b', (2n ** 255n).toString(), '0', '', '', false, false]), RangeError);
});

t.test('a decommissioning is committed to in the windows after it', async (t) => {
  const input: WindowInput = { ...example, devices: [{ ...example.devices[0], decommissioned: { at: 10_000, reason: 'meter removed' } }] };
  const e = buildEvidence(settleWindow(input));
  t.same(
    e.leaves.filter((l) => l[0] === 'decommissioned'),
    [['decommissioned', 'd1', '10000', '0', 'meter removed', '', false, false, '']],
  );
  const device = e.leaves.find((l) => l[0] === 'device')!;
  t.same(device.slice(6, 8), [false, false], 'out of coverage');
  t.match(device[5], /"status":"out_of_coverage"/);
  // Decommissioned later than the window start: still in coverage here, no decommissioning leaf.
  const later = buildEvidence(settleWindow({ ...example, devices: [{ ...example.devices[0], decommissioned: { at: 10_001, reason: 'meter removed' } }] }));
  t.equal(later.leaves.filter((l) => l[0] === 'decommissioned').length, 0);
  t.not(later.root, e.root);
});
