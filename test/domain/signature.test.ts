/**
 * Device signatures (domain/signature.ts): the canonical line, its hash, key parsing, sign/verify,
 * and the hash-chain check. Property: changing any signed field breaks the signature.
 */
import t from 'tap';
import fc from 'fast-check';
import { createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import {
  canonicalLine,
  checkChain,
  generateDeviceKey,
  lineHash,
  normalisePublicKey,
  publicKeyBytes,
  publicKeyObject,
  publicKeyOf,
  readingLine,
  signLine,
  verifyLine,
  type ChainReading,
  type LineFields,
} from '../../domain/signature.ts';
import type { Reading } from '../../domain/reading.ts';

const KEY = generateDeviceKey();
const OTHER = generateDeviceKey();

const fields: LineFields = { deviceId: 'meter-1', seq: 1042, ts: 1795327200000, metric: 'electricity_import', value: '81234.50', unit: 'kWh', reset: false, prev: '' };

t.test('the canonical line is the SPEC format', async (t) => {
  t.equal(canonicalLine(fields), 'meter-1|1042|1795327200000|electricity_import|81234.50|kWh|0|');
  const prev = lineHash('x');
  t.equal(canonicalLine({ ...fields, reset: true, prev }), `meter-1|1042|1795327200000|electricity_import|81234.50|kWh|1|${prev}`);
  t.equal(lineHash('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'hex SHA-256 of the UTF-8 bytes');
});

t.test('a stored reading gives back the line it was signed over (value and unit as sent)', async (t) => {
  const r: Reading = {
    facilityId: 'f', deviceId: 'meter-1', seq: 1042, ts: 1795327200000, metric: 'electricity_import', value: '81.2345',
    unit: 'kWh', reset: false, receivedAt: 0, sig: 'x', prev: '', sentValue: '81234.50', sentUnit: 'Wh',
  };
  t.equal(readingLine(r), 'meter-1|1042|1795327200000|electricity_import|81234.50|Wh|0|');
  const { sentValue: _v, sentUnit: _u, ...plain } = r;
  t.equal(readingLine({ ...plain, value: '81234.5' }), 'meter-1|1042|1795327200000|electricity_import|81234.5|kWh|0|', 'sent = stored when absent');
  const { sig: _s, ...unsigned } = r;
  t.equal(readingLine(unsigned), undefined);
});

t.test('keys: hex or base64 of 32 bytes, cached KeyObjects', async (t) => {
  const hex = KEY.publicKey;
  const b64 = Buffer.from(hex, 'hex').toString('base64');
  const b64url = Buffer.from(hex, 'hex').toString('base64url');
  t.equal(normalisePublicKey(hex), hex);
  t.equal(normalisePublicKey(hex.toUpperCase()), hex);
  t.equal(normalisePublicKey(b64), hex);
  t.equal(normalisePublicKey(b64url), hex);
  t.equal(normalisePublicKey(b64.replace(/=$/, '')), hex, 'padding optional');
  for (const bad of ['', 'zz', hex.slice(2), `${hex}00`, Buffer.alloc(33).toString('base64'), 'not a key at all, not at all, no!!', `${hex.slice(0, 63)}g`]) {
    t.equal(publicKeyBytes(bad), undefined, `rejects ${JSON.stringify(bad).slice(0, 20)}`);
    t.equal(normalisePublicKey(bad), undefined);
  }
  t.equal(publicKeyObject(hex), publicKeyObject(hex), 'same KeyObject from the cache');
  t.equal(publicKeyOf(KEY.privateKey), KEY.publicKey, 'public key from the seed');
  t.throws(() => publicKeyObject('nope'), TypeError);
});

t.test('sign and verify (and interop with a plain node:crypto device)', async (t) => {
  const line = canonicalLine(fields);
  const sig = signLine(KEY.privateKey, line);
  t.match(sig, /^[A-Za-z0-9+/]{86}==$/);
  t.ok(verifyLine(KEY.publicKey, line, sig));
  t.ok(verifyLine(Buffer.from(KEY.publicKey, 'hex').toString('base64'), line, sig), 'base64 key');
  t.notOk(verifyLine(OTHER.publicKey, line, sig), 'another key');
  t.notOk(verifyLine(KEY.publicKey, `${line}x`, sig), 'another line');
  const flip = (c: string) => (c === 'A' ? 'B' : 'A');
  t.notOk(verifyLine(KEY.publicKey, line, sig.slice(0, 10) + flip(sig[10]) + sig.slice(11)), 'sig changed');
  // The last character carries 2 bits and 4 unused ones: a non-canonical text of the same bytes is refused.
  const last = sig[85];
  const sameBytes = String.fromCharCode(last.charCodeAt(0) + 1);
  t.notOk(verifyLine(KEY.publicKey, line, sig.slice(0, 85) + sameBytes + '=='), 'non-canonical base64 refused');
  t.equal(Buffer.from(sig.slice(0, 85) + sameBytes + '==', 'base64').equals(Buffer.from(sig, 'base64')), true, '(it decodes to the same bytes)');
  t.notOk(verifyLine(KEY.publicKey, line, 'AAAA'), 'short sig');
  t.notOk(verifyLine('garbage', line, sig), 'bad key: false, no throw');
  // What the README's device does: generate with node:crypto, export the raw key, sign the line.
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
  const deviceSig = sign(null, Buffer.from(line), privateKey).toString('base64');
  t.ok(verifyLine(raw, line, deviceSig));
  t.equal(normalisePublicKey(raw), createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-32).toString('hex'));
});

const arbFields = fc.record({
  deviceId: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
  seq: fc.nat(),
  ts: fc.nat(),
  metric: fc.constantFrom('electricity_import', 'electricity_export', 'renewable_generation', 'natural_gas', 'co2_direct'),
  value: fc.stringMatching(/^(?:0|[1-9]\d{0,12})(?:\.\d{1,6})?$/),
  unit: fc.constantFrom('Wh', 'kWh', 'MWh', 'm3', 'g', 'kg', 't'),
  reset: fc.boolean(),
  prev: fc.oneof(fc.constant(''), fc.stringMatching(/^[0-9a-f]{64}$/)),
});

t.test('property: tampering with any signed field breaks the signature', async (t) => {
  const tamper = (f: LineFields, which: number): LineFields => {
    switch (which) {
      case 0: return { ...f, deviceId: f.deviceId === 'x' ? 'y' : 'x' };
      case 1: return { ...f, seq: f.seq + 1 };
      case 2: return { ...f, ts: f.ts + 1 };
      case 3: return { ...f, metric: f.metric === 'co2_direct' ? 'natural_gas' : 'co2_direct' };
      case 4: return { ...f, value: `${f.value}1` };
      case 5: return { ...f, unit: f.unit === 'kWh' ? 'Wh' : 'kWh' };
      case 6: return { ...f, reset: !f.reset };
      default: return { ...f, prev: f.prev === '' ? lineHash('a') : '' };
    }
  };
  fc.assert(
    fc.property(arbFields, fc.integer({ min: 0, max: 7 }), (f, which) => {
      const sig = signLine(KEY.privateKey, canonicalLine(f));
      if (!verifyLine(KEY.publicKey, canonicalLine(f), sig)) return false;
      return !verifyLine(KEY.publicKey, canonicalLine(tamper(f, which)), sig) && !verifyLine(OTHER.publicKey, canonicalLine(f), sig);
    }),
    { numRuns: 200 },
  );
  t.pass('200 runs');
});

/** A signed chain of n readings of one device, seqs step apart. */
function chain(n: number, step = 1, start = ''): ChainReading[] {
  const out: ChainReading[] = [];
  let prev = start;
  for (let i = 0; i < n; i++) {
    const line = canonicalLine({ ...fields, seq: 10 + i * step, value: String(100 + i), prev });
    out.push({ seq: 10 + i * step, line, prev });
    prev = lineHash(line);
  }
  return out;
}

t.test('hash chain: unbroken, omitted, inserted, and with context', async (t) => {
  const c = chain(6, 3);
  t.same(checkChain(c), { unbroken: true, breaks: [], starts: [10] }, 'seqs need not be contiguous');
  t.same(checkChain([...c].reverse()), { unbroken: true, breaks: [], starts: [10] }, 'order given does not matter');
  // The platform drops one: the next one's prev names a line that is not there.
  t.same(checkChain([c[0], c[1], c[3], c[4], c[5]]).breaks, [{ seq: c[3].seq, reason: 'prev_missing' }]);
  // A later window uses c[3..5]; c[2] (previous settlement) is context.
  t.same(checkChain(c.slice(3), [c[2]]), { unbroken: true, breaks: [], starts: [] });
  t.same(checkChain(c.slice(3)).breaks, [{ seq: c[3].seq, reason: 'prev_missing' }], 'without its predecessor the first link is unchecked: a break');
  // Something inserted between two chained readings (a reading the device never signed after c[1]).
  const forged = { seq: c[1].seq + 1, line: canonicalLine({ ...fields, seq: c[1].seq + 1, prev: lineHash(c[1].line) }), prev: lineHash(c[1].line) };
  t.same(checkChain([...c, forged]).breaks, [{ seq: c[2].seq, reason: 'prev_not_previous' }]);
  // Two different readings at one seq.
  const twin = { ...c[4], line: `${c[4].line}0` };
  t.same(checkChain([...c, twin]).breaks.map((b) => b.reason).includes('duplicate_seq'), true);
  // A chain start ('' prev) mid-stream is the device's own word (key rotation): not a break.
  const restart = chain(2, 1, '');
  t.ok(checkChain(restart).unbroken);
});
