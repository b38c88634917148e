/**
 * Ed25519 verification (domain/ed25519.ts): libsodium (sodium-native) and node:crypto under the one
 * strict rule give the same verdicts; RFC 8032 vectors pass; a flipped bit, a non-canonical S (S + L),
 * a small-order key or R, a non-canonical key, a wrong key and an empty or short signature fail with
 * both; anything libsodium accepts, plain node:crypto accepts too (an auditor with node:crypto alone
 * agrees); the addon failing to load falls back to node:crypto and says why.
 */
import { createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import t from 'tap';
import { hasSmallOrder, keyAcceptable, loadEd25519, sigAcceptable, verifyStrict, type Ed25519Backend } from '../../domain/ed25519.ts';
import { normalisePublicKey, verifyLine } from '../../domain/signature.ts';

const sodium = loadEd25519({ prefer: 'libsodium' });
const node = loadEd25519({ prefer: 'node:crypto' });
const BACKENDS: Ed25519Backend[] = [sodium, node];

const PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const L = (1n << 252n) + 27742317777372353535851937790883648493n;

/** RFC 8032 section 7.1, TESTS 1-3: secret key, public key, message, signature (hex). */
const RFC8032 = [
  ['9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', '', 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'],
  ['4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', '72', '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'],
  ['c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7', 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025', 'af82', '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a'],
].map(([sk, pk, msg, sig]) => ({ sk: Buffer.from(sk, 'hex'), pk: Buffer.from(pk, 'hex'), msg: Buffer.from(msg, 'hex'), sig: Buffer.from(sig, 'hex') }));

/** Plain node:crypto, no extra checks: what OpenSSL 3.0 alone says. */
function opensslVerify(sig: Buffer, msg: Buffer, pk: Buffer): boolean {
  try {
    return verify(null, msg, createPublicKey({ key: Buffer.concat([SPKI, pk]), format: 'der', type: 'spki' }), sig);
  } catch {
    return false;
  }
}

function le(n: bigint): Buffer {
  const b = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) b[i] = Number((n >> BigInt(8 * i)) & 0xffn);
  return b;
}
function fromLe(b: Buffer): bigint {
  let n = 0n;
  for (let i = 31; i >= 0; i--) n = (n << 8n) | BigInt(b[i]);
  return n;
}

t.test('libsodium loads here (sodium-native ships a linux-x64 prebuilt)', async (t) => {
  t.equal(sodium.name, 'libsodium', sodium.fallbackReason ?? '');
  t.type(sodium.modulePath, 'string');
  t.equal(node.name, 'node:crypto');
  t.equal(node.fallbackReason, undefined, 'node:crypto by choice, not a fallback');
});

t.test('RFC 8032 vectors verify with both backends, and node:crypto signs them byte for byte', async (t) => {
  for (const [i, v] of RFC8032.entries()) {
    const key = createPrivateKey({ key: Buffer.concat([PKCS8, v.sk]), format: 'der', type: 'pkcs8' });
    t.same(sign(null, v.msg, key), v.sig, `TEST ${i + 1}: the same signature`);
    for (const b of BACKENDS) t.ok(verifyStrict(v.sig, v.msg, v.pk, b), `TEST ${i + 1} verifies (${b.name})`);
  }
});

t.test('what must fail fails with both backends', async (t) => {
  const v = RFC8032[2];
  const other = RFC8032[1].pk;
  const S = fromLe(v.sig.subarray(32));
  const cases: [string, Buffer, Buffer, Buffer][] = [
    ['a flipped bit in R', Buffer.from(v.sig).fill(v.sig[3] ^ 0x04, 3, 4), v.msg, v.pk],
    ['a flipped bit in S', Buffer.from(v.sig).fill(v.sig[40] ^ 0x01, 40, 41), v.msg, v.pk],
    ['a flipped bit in the message', v.sig, Buffer.from([v.msg[0] ^ 0x80, v.msg[1]]), v.pk],
    ['a flipped bit in the key', v.sig, v.msg, Buffer.from(v.pk).fill(v.pk[7] ^ 0x10, 7, 8)],
    ['non-canonical S = S + L', Buffer.concat([v.sig.subarray(0, 32), le(S + L)]), v.msg, v.pk],
    ['S = L', Buffer.concat([v.sig.subarray(0, 32), le(L)]), v.msg, v.pk],
    ['another key', v.sig, v.msg, other],
    ['an empty signature', Buffer.alloc(0), v.msg, v.pk],
    ['a 63-byte signature', v.sig.subarray(0, 63), v.msg, v.pk],
    ['a 31-byte key', v.sig, v.msg, v.pk.subarray(0, 31)],
  ];
  for (const [what, sig, msg, pk] of cases) for (const b of BACKENDS) t.notOk(verifyStrict(sig, msg, pk, b), `${what}: refused (${b.name})`);
  // (S + L is what OpenSSL refuses too: the strict rule is not needed there, only agreed with.)
  t.notOk(opensslVerify(cases[4][1], v.msg, v.pk), 'OpenSSL alone refuses S + L as well');
});

t.test('small-order and non-canonical keys: OpenSSL alone accepts a forgery, the strict rule does not', async (t) => {
  // Key = the identity point, R = identity, S = 0: [0]B - [k]O = O for every message.
  const identity = Buffer.from(`01${'00'.repeat(31)}`, 'hex');
  const forged = Buffer.concat([identity, Buffer.alloc(32)]);
  const msg = Buffer.from('d1|1|1800000000000|electricity_import|999999|kWh|0|');
  t.ok(opensslVerify(forged, msg, identity), 'OpenSSL 3.0 alone accepts it (why the checks run on every path)');
  for (const b of BACKENDS) t.notOk(verifyStrict(forged, msg, identity, b), `refused (${b.name})`);
  t.notOk(sodium.verifyRaw(forged, msg, identity), 'libsodium refuses it by itself');
  t.notOk(keyAcceptable(identity));
  t.equal(normalisePublicKey(identity.toString('hex')), undefined, 'and such a key cannot be registered');
  t.notOk(verifyLine(identity.toString('hex'), msg.toString(), forged.toString('base64')), 'verifyLine refuses it');
  // Every small-order encoding, with the sign bit set or not, is refused as a key and as R.
  const orders = ['00', '01', 'ec', 'ed', 'ee'].map((b) => (b === '00' || b === '01' ? `${b}${'00'.repeat(31)}` : `${b}${'ff'.repeat(30)}7f`));
  orders.push('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a');
  for (const h of orders) {
    for (const top of [0, 0x80]) {
      const p = Buffer.from(h, 'hex');
      p[31] |= top;
      t.ok(hasSmallOrder(p), `${p.toString('hex').slice(0, 8)}…${p.toString('hex').slice(-2)} has small order`);
      t.notOk(sodium.verifyRaw(Buffer.concat([p, Buffer.alloc(32)]), msg, p), 'libsodium refuses it as key and R');
      t.notOk(sigAcceptable(Buffer.concat([p, v0s()])), 'as R: refused');
    }
  }
  // y >= p: a non-canonical key encoding (p + 3 is y = 3 again, not a small-order point).
  const nonCanonical = Buffer.from(`f0${'ff'.repeat(30)}7f`, 'hex');
  t.notOk(keyAcceptable(nonCanonical), 'y >= p refused');
  t.ok(keyAcceptable(RFC8032[0].pk));
});

function v0s(): Buffer {
  return Buffer.alloc(32);
}

t.test('differential: both backends agree on mutated signatures, and libsodium-accepted implies OpenSSL-accepted', async (t) => {
  const keys = Array.from({ length: 4 }, () => {
    const seed = randomBytes(32);
    const priv = createPrivateKey({ key: Buffer.concat([PKCS8, seed]), format: 'der', type: 'pkcs8' });
    return { priv, pk: createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(-32) };
  });
  let accepted = 0;
  let disagreements = 0;
  let sodiumOnly = 0;
  for (let i = 0; i < 600; i++) {
    const k = keys[i % keys.length];
    const msg = randomBytes(1 + (i % 90));
    let sig = sign(null, msg, k.priv);
    let pk: Buffer = k.pk;
    let m = msg;
    switch (i % 6) {
      case 0:
        break; // genuine
      case 1:
        sig = Buffer.from(sig);
        sig[i % 64] ^= 1 << (i % 8);
        break;
      case 2:
        pk = Buffer.from(pk);
        pk[i % 32] ^= 1 << (i % 8);
        break;
      case 3:
        m = Buffer.concat([msg, Buffer.from([i & 0xff])]);
        break;
      case 4:
        sig = randomBytes(64);
        break;
      default:
        pk = randomBytes(32);
    }
    const a = verifyStrict(sig, m, pk, sodium);
    const b = verifyStrict(sig, m, pk, node);
    if (a !== b) disagreements++;
    if (a && !opensslVerify(sig, m, pk)) sodiumOnly++;
    if (a) accepted++;
  }
  t.equal(disagreements, 0, 'libsodium and strict node:crypto agree on every case');
  t.equal(sodiumOnly, 0, 'nothing libsodium accepts is refused by OpenSSL');
  t.equal(accepted, 100, 'exactly the 100 genuine signatures verify');
});

t.test('the addon failing to load: node:crypto, with the reason', async (t) => {
  const b = loadEd25519({
    load: () => {
      throw new Error('Cannot find module sodium-native');
    },
  });
  t.equal(b.name, 'node:crypto');
  t.match(b.fallbackReason, /Cannot find module/);
  const v = RFC8032[0];
  t.ok(verifyStrict(v.sig, v.msg, v.pk, b), 'still verifies');
  const junk = loadEd25519({ load: () => ({ path: '/nowhere', mod: {} }) });
  t.equal(junk.name, 'node:crypto', 'an addon without the function is not used');
  t.match(junk.fallbackReason, /crypto_sign_verify_detached/);
});
