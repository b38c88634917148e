/**
 * The batch signature verifier (broker/verify-pool.ts): worker threads and the inline path, with
 * libsodium and with node:crypto, give the same answers, item by item, for valid signatures, another
 * device's key, a changed line, a malformed signature, a malformed key, a non-canonical S, a
 * small-order key (a forgery OpenSSL alone accepts) and non-ASCII lines; without the addon the pool
 * verifies with node:crypto and logs why.
 */
import t from 'tap';
import { createVerifier, verifyInline, type VerifyItem } from '../../broker/verify-pool.ts';
import { loadEd25519 } from '../../domain/ed25519.ts';
import { createLogger } from '../../domain/logger.ts';
import { canonicalLine, generateDeviceKey, signLine } from '../../domain/signature.ts';

const A = generateDeviceKey();
const B = generateDeviceKey();

const L = (1n << 252n) + 27742317777372353535851937790883648493n;
/** The same signature with S replaced by S + L (same value mod L, a non-canonical encoding). */
function plusL(sig: string): string {
  const b = Buffer.from(sig, 'base64');
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(b[i]);
  s += L;
  for (let i = 32; i < 64; i++) b[i] = Number((s >> BigInt(8 * (i - 32))) & 0xffn);
  return b.toString('base64');
}
const IDENTITY_KEY = `01${'00'.repeat(31)}`;
const IDENTITY_FORGERY = Buffer.concat([Buffer.from(IDENTITY_KEY, 'hex'), Buffer.alloc(32)]).toString('base64');

function items(n: number): { items: VerifyItem[]; want: boolean[] } {
  const out: VerifyItem[] = [];
  const want: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const line = canonicalLine({ deviceId: i % 10 === 9 ? 'dé✓' : 'd', seq: i, ts: 1000 + i, metric: 'natural_gas', value: String(i), unit: 'm3', reset: false, prev: '' });
    const sig = signLine(A.privateKey, line);
    const b64Key = Buffer.from(A.publicKey, 'hex').toString('base64');
    switch (i % 9) {
      case 6: out.push({ key: A.publicKey, line, sig: plusL(sig) }); want.push(false); break;
      case 7: out.push({ key: IDENTITY_KEY, line, sig: IDENTITY_FORGERY }); want.push(false); break;
      case 8: out.push({ key: A.publicKey, line, sig: '' }); want.push(false); break;
      case 0: out.push({ key: A.publicKey, line, sig }); want.push(true); break;
      case 1: out.push({ key: b64Key, line, sig }); want.push(true); break;
      case 2: out.push({ key: B.publicKey, line, sig }); want.push(false); break;
      case 3: out.push({ key: A.publicKey, line: `${line}0`, sig }); want.push(false); break;
      case 4: out.push({ key: A.publicKey, line, sig: 'AAAA' }); want.push(false); break;
      default: out.push({ key: 'not-a-key', line, sig }); want.push(false);
    }
  }
  return { items: out, want };
}

for (const prefer of ['libsodium', 'node:crypto'] as const) {
  t.test(`inline and worker pool agree item by item (${prefer})`, async (t) => {
    const backend = loadEd25519({ prefer });
    t.equal(backend.name, prefer);
    const { items: xs, want } = items(300);
    t.same(verifyInline(xs, backend), want, 'inline');
    const pool = createVerifier({ workers: 2, inlineBelow: 8, backend });
    t.teardown(() => pool.close());
    t.equal(pool.workers, 2);
    t.equal(pool.backend, prefer);
    t.same(await pool.verify(xs), want, 'pool, chunked over two workers');
    t.same(await pool.verify(xs.slice(0, 5)), want.slice(0, 5), 'small batch inline');
  });
}

t.test('without the addon: node:crypto in the workers, and a log line saying so', async (t) => {
  const lines: { level: number; msg: string; reason?: string }[] = [];
  const logger = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s)) }, 'json');
  const backend = loadEd25519({
    load: () => {
      throw new Error("Cannot find module 'sodium-native'");
    },
  });
  const pool = createVerifier({ workers: 1, inlineBelow: 4, backend, logger });
  t.teardown(() => pool.close());
  t.equal(pool.backend, 'node:crypto');
  t.equal(lines.length, 1);
  t.match(lines[0], { level: 40, msg: /libsodium \(sodium-native\) did not load.*node:crypto/, reason: /Cannot find module/ });
  const { items: xs, want } = items(90);
  t.same(await pool.verify(xs), want, 'the worker verifies with node:crypto, same answers');
  const quiet: unknown[] = [];
  createVerifier({ workers: 0, logger: createLogger('info', { write: (s: string) => void quiet.push(s) }, 'json') });
  t.same(quiet, [], 'nothing logged when libsodium loads');
});

t.test('inline and worker pool agree item by item (default backend)', async (t) => {
  const { items: xs, want } = items(300);
  t.same(verifyInline(xs), want, 'inline');
  const pool = createVerifier({ workers: 2, inlineBelow: 8 });
  t.teardown(() => pool.close());
  t.equal(pool.workers, 2);
  t.same(await pool.verify(xs), want, 'pool, chunked over two workers');
  t.same(await pool.verify(xs.slice(0, 5)), want.slice(0, 5), 'small batch inline');
  t.same(await pool.verify([]), [], 'empty batch');
  // Concurrent batches keep their own answers.
  const [a, b] = await Promise.all([pool.verify(xs.slice(0, 100)), pool.verify(xs.slice(100))]);
  t.same([...a, ...b], want, 'concurrent batches');
});

t.test('sharing a batch between the calling thread and a worker: the same answers, in order', async (t) => {
  const { items: xs, want } = items(200);
  const pool = createVerifier({ workers: 1, inlineBelow: 8, shareInline: true });
  t.teardown(() => pool.close());
  t.same(await pool.verify(xs), want, 'two halves, one inline');
  t.same(await pool.verify(xs.slice(0, 20)), want.slice(0, 20), 'a small batch, split too');
  const [a, b] = await Promise.all([pool.verify(xs.slice(0, 70)), pool.verify(xs.slice(70))]);
  t.same([...a, ...b], want, 'concurrent batches');
});

t.test('a verifier with no workers verifies inline; a closed one refuses', async (t) => {
  const { items: xs, want } = items(40);
  const inline = createVerifier({ workers: 0 });
  t.same(await inline.verify(xs), want);
  await inline.close();
  await t.rejects(inline.verify(xs), /closed/);
  t.throws(() => createVerifier({ workers: -1 }), TypeError);
});
