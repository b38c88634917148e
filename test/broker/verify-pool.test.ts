/**
 * The batch signature verifier (broker/verify-pool.ts): worker threads and the inline path give the
 * same answers, item by item, for valid signatures, another device's key, a changed line, a malformed
 * signature and a malformed key.
 */
import t from 'tap';
import { createVerifier, verifyInline, type VerifyItem } from '../../broker/verify-pool.ts';
import { canonicalLine, generateDeviceKey, signLine } from '../../domain/signature.ts';

const A = generateDeviceKey();
const B = generateDeviceKey();

function items(n: number): { items: VerifyItem[]; want: boolean[] } {
  const out: VerifyItem[] = [];
  const want: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const line = canonicalLine({ deviceId: 'd', seq: i, ts: 1000 + i, metric: 'natural_gas', value: String(i), unit: 'm3', reset: false, prev: '' });
    const sig = signLine(A.privateKey, line);
    const b64Key = Buffer.from(A.publicKey, 'hex').toString('base64');
    switch (i % 6) {
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

t.test('inline and worker pool agree item by item', async (t) => {
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

t.test('a verifier with no workers verifies inline; a closed one refuses', async (t) => {
  const { items: xs, want } = items(40);
  const inline = createVerifier({ workers: 0 });
  t.same(await inline.verify(xs), want);
  await inline.close();
  await t.rejects(inline.verify(xs), /closed/);
  t.throws(() => createVerifier({ workers: -1 }), TypeError);
});
