/**
 * The fast paths of validation and of the store's checks give exactly what the general code gives:
 * - a payload in the common compact form (broker/validate.ts `fastElement`) validates to the same
 *   readings and the same rejections as the strict JSON parser (reached by a leading space, which
 *   JSON allows and the fast path does not take), over a grid of valid and invalid field texts;
 * - `canonicalPlain` prints what Decimal prints; `compareDecimalText` orders like Decimal.cmp.
 */
import t from 'tap';
import { canonicalPlain, fastElement, validatePayload } from '../../broker/validate.ts';
import { Decimal } from '../../domain/decimal.ts';
import { compareDecimalText } from '../../domain/decimal.ts';

const NOW = Date.parse('2026-11-22T06:00:00.000Z');
const ctx = { facilityId: 'f1', deviceId: 'd1', now: NOW };

const SEQS = ['1', '0', '42', '01', '-1', '1.5', '1e3', '9007199254740993', '12345678901234567'];
const TSS = [
  String(NOW - 1000),
  String(NOW + 3_600_000),
  '"2026-11-22T06:00:00.000Z"',
  '"2026-11-22T07:00:00+01:00"',
  '"2026-11-22T06:00:00"',
  '"2026-02-30T06:00:00Z"',
  '"not a time"',
  '-5',
  '1.5',
];
const METRIC_UNITS = [
  ['electricity_import', 'kWh'],
  ['electricity_import', 'Wh'],
  ['electricity_export', 'MWh'],
  ['natural_gas', 'm3'],
  ['co2_direct', 't'],
  ['co2_direct', 'kg'],
  ['natural_gas', 'kWh'],
  ['steam', 'kg'],
];
const VALUES = ['1000', '1000.50', '0.000', '0', '81234.5', '1e3', '-5', '-0', '10.0100', '1'.repeat(61), '1'.repeat(30) + '.' + '2'.repeat(30)];
const SIG = Buffer.alloc(64, 9).toString('base64');
const HASH = 'c0'.repeat(32);
/** reset, then the signature fields (in the fast path's order, and not). */
const RESETS = [
  '',
  ',"reset":true',
  ',"reset":false',
  `,"prev":"","sig":"${SIG}"`,
  `,"reset":true,"prev":"${HASH}","sig":"${SIG}"`,
  `,"sig":"${SIG}"`,
  `,"prev":"${HASH}"`,
  `,"sig":"${SIG.slice(1)}"`,
];

function compact(seq: string, ts: string, metric: string, unit: string, value: string, reset: string): string {
  return `{"seq":${seq},"ts":${ts},"metric":"${metric}","value":${value},"unit":"${unit}"${reset}}`;
}

t.test('a signed reading in the common form takes the fast path', async (t) => {
  const text = `{"seq":1,"ts":${NOW},"metric":"natural_gas","value":1,"unit":"m3","prev":"${HASH}","sig":"${SIG}"}`;
  t.match(fastElement(text), { prev: HASH, sig: SIG });
  t.equal(fastElement(`{"seq":1,"ts":${NOW},"metric":"natural_gas","value":1,"unit":"m3","sig":"${SIG}","prev":"${HASH}"}`), undefined, 'other order: the parser');
});

t.test('fast path = strict parser on every combination of the grid', async (t) => {
  let fast = 0;
  let compared = 0;
  let mismatches = 0;
  for (const seq of SEQS)
    for (const ts of TSS)
      for (const [metric, unit] of METRIC_UNITS)
        for (const value of VALUES)
          for (const reset of RESETS) {
            const text = compact(seq, ts, metric, unit, value, reset);
            if (fastElement(text)) fast++;
            const a = validatePayload(Buffer.from(text), ctx);
            const b = validatePayload(Buffer.from(` ${text}`), ctx);
            compared++;
            const sameReadings = JSON.stringify(a.readings) === JSON.stringify(b.readings);
            // A JSON syntax error names its position, which the leading space shifts: compare the reason there.
            const why = (rs: typeof a.rejections) => JSON.stringify(rs.map((r) => (r.reason === 'invalid_json' ? [r.reason] : [r.reason, r.detail])));
            const sameReasons = why(a.rejections) === why(b.rejections);
            if (!sameReadings || !sameReasons) {
              mismatches++;
              if (mismatches <= 5) t.fail(`differs for ${text}`, { fast: a, strict: b });
            }
          }
  t.equal(mismatches, 0, `${compared} payloads: fast and strict agree`);
  t.ok(fast > compared / 3, `the fast path took ${fast} of them (JSON-valid compact ones)`);
});

t.test('the fast path takes the common forms and leaves anything else to the parser', async (t) => {
  t.ok(fastElement('{"seq":1,"ts":"2026-11-22T06:00:00.000Z","metric":"electricity_import","value":81234.5,"unit":"kWh"}'));
  t.ok(fastElement(`{"seq":7,"ts":${NOW},"metric":"co2_direct","value":3,"unit":"kg","reset":true}`));
  t.notOk(fastElement('{"ts":1,"seq":1,"metric":"electricity_import","value":1,"unit":"kWh"}'), 'other key order');
  t.notOk(fastElement('{"seq":1, "ts":1,"metric":"electricity_import","value":1,"unit":"kWh"}'), 'whitespace');
  t.notOk(fastElement('{"seq":1,"ts":"2026\\u002d11","metric":"electricity_import","value":1,"unit":"kWh"}'), 'an escape');
  t.notOk(fastElement('{"seq":01,"ts":1,"metric":"electricity_import","value":1,"unit":"kWh"}'), 'not JSON (leading zero)');
  t.notOk(fastElement('{"seq":1,"ts":1,"metric":"electricity_import","value":NaN,"unit":"kWh"}'), 'not JSON (NaN)');
  t.notOk(fastElement('{"seq":1,"ts":1,"metric":"electricity_import","value":1,"unit":"kWh","x":1}'), 'an extra field');
  t.notOk(fastElement('[{"seq":1,"ts":1,"metric":"electricity_import","value":1,"unit":"kWh"}]'), 'an array');
  const s = validatePayload(Buffer.from('{"seq":1,"ts":"2026-11-22T06:00:00.000Z","metric":"electricity_import","value":0.50,"unit":"kWh"}'), ctx);
  t.same(s.readings[0].value, '0.5', 'canonical value text');
});

/** Deterministic pseudo-random source (no flaky seeds). */
function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function randomPlain(next: () => number): string {
  const digits = (n: number) => Array.from({ length: n }, () => Math.floor(next() * 10)).join('');
  const intLen = Math.floor(next() * 8);
  const int = intLen === 0 ? '0' : String(1 + Math.floor(next() * 9)) + digits(intLen - 1);
  const frac = next() < 0.3 ? '' : digits(1 + Math.floor(next() * 6)) + (next() < 0.3 ? '000' : '');
  return frac ? `${int}.${frac}` : int;
}

t.test('canonicalPlain prints exactly what Decimal prints', async (t) => {
  const next = rng(7);
  let bad = 0;
  for (let i = 0; i < 5000; i++) {
    const text = randomPlain(next);
    if (canonicalPlain(text) !== Decimal.parse(text).toString()) bad++;
  }
  t.equal(bad, 0, '5000 random plain decimals');
  for (const text of ['1e3', '-1', '+1', '.5', '1.', '01']) t.equal(canonicalPlain(text), undefined, `${text}: left to Decimal`);
});

t.test('compareDecimalText orders exactly like Decimal.cmp', async (t) => {
  const next = rng(11);
  const pool = ['0', '-0.5', '1e2', '100', '99.999', '-3', ...Array.from({ length: 300 }, () => Decimal.parse(randomPlain(next)).toString())];
  let bad = 0;
  for (const a of pool) for (const b of pool) if (compareDecimalText(a, b) !== Decimal.parse(a).cmp(Decimal.parse(b))) bad++;
  t.equal(bad, 0, `${pool.length ** 2} ordered pairs`);
  t.equal(compareDecimalText('0.45', '0.5'), -1);
  t.equal(compareDecimalText('10', '9.99'), 1);
});
