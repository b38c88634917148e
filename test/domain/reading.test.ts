import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { compareDecimalText } from '../../domain/decimal.ts';
import * as limits from '../../domain/limits.ts';
import { METRICS, MAX_PAYLOAD_BYTES, REGISTER_METRICS, isRegisterMetric, parseReadingKey, readingKeyText } from '../../domain/reading.ts';

t.test('register metrics: one test, one list', async (t) => {
  t.same([...REGISTER_METRICS].sort(), ['electricity_export', 'electricity_import', 'natural_gas', 'renewable_generation']);
  t.equal(isRegisterMetric('co2_direct'), false, 'an interval metric');
  t.equal(isRegisterMetric('toString'), false, 'not a metric at all');
  t.equal(isRegisterMetric('__proto__'), false);
  for (const m of Object.keys(METRICS)) t.equal(isRegisterMetric(m), METRICS[m as keyof typeof METRICS].kind === 'register', m);
});

t.test('reading keys print and parse back', async (t) => {
  for (const k of [{ deviceId: 'd1', seq: 0 }, { deviceId: 'B-meter_2', seq: 9007199254740991 }]) {
    t.equal(readingKeyText(k), `${k.deviceId}:${k.seq}`);
    t.same(parseReadingKey(readingKeyText(k)), k);
  }
  for (const bad of ['', 'd1', 'd1:', ':3', 'd1:-1', 'd1:1.5', 'd1:01', 'd:1:2', 'd1:1e3', `${'x'.repeat(65)}:1`]) {
    t.throws(() => parseReadingKey(bad), TypeError, JSON.stringify(bad));
  }
});

t.test('decimal text compares by value, whatever the notation', async (t) => {
  t.equal(compareDecimalText('3600', '3600.0'), 0);
  t.equal(compareDecimalText('3600', '36e2'), 0);
  t.equal(compareDecimalText('0.5366', '0.53660'), 0);
  t.equal(compareDecimalText('0.45', '0.5'), -1);
  t.equal(compareDecimalText('-1', '0'), -1);
  t.throws(() => compareDecimalText('1', 'one'), { code: 'INVALID_DECIMAL' });
});

t.test('limits live in one module; the reading schema re-exports them', async (t) => {
  t.equal(limits.MAX_REJECTION_PAYLOAD_BYTES, 4096);
  t.equal(MAX_PAYLOAD_BYTES, limits.MAX_PAYLOAD_BYTES);
  // No copy of the rejection cap elsewhere (it was written four times).
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  for (const dir of ['broker', 'domain', 'store']) {
    for (const name of fs.readdirSync(path.join(root, dir), { recursive: true }) as string[]) {
      if (!name.endsWith('.ts') || (dir === 'domain' && name === 'limits.ts')) continue;
      t.notMatch(fs.readFileSync(path.join(root, dir, name), 'utf8'), /\b4096\b|\b4 \* 1024\b/, `${dir}/${name}: no 4 KiB literal`);
    }
  }
});
