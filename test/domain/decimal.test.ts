import t from 'tap';
import { Decimal, gramsToTonnes } from '../../domain/decimal.ts';

t.test('parse and print canonical text', async (t) => {
  t.equal(Decimal.parse('81234.50').toString(), '81234.5');
  t.equal(Decimal.parse('-0.000').toString(), '0');
  t.equal(Decimal.parse('1e3').toString(), '1000');
  t.equal(Decimal.parse('1.5E-3').toString(), '0.0015');
  t.equal(Decimal.parse('-12.340').toString(), '-12.34');
  t.throws(() => Decimal.parse('NaN'), { code: 'INVALID_DECIMAL' });
  t.throws(() => Decimal.parse('1e999999'), { code: 'INVALID_DECIMAL' });
  t.throws(() => Decimal.parse('0x10'), { code: 'INVALID_DECIMAL' });
});

t.test('exact arithmetic where binary floating point loses', async (t) => {
  const sum = Decimal.parse('0.1').add(Decimal.parse('0.2'));
  t.equal(sum.toString(), '0.3');
  t.not(0.1 + 0.2, 0.3, 'floats really do lose here');
  t.equal(Decimal.parse('5').mul(Decimal.parse('0.5366')).toString(), '2.683');
  t.equal(Decimal.parse('1234').shift(-3).toString(), '1.234');
  t.equal(Decimal.parse('1.234').shift(3).toString(), '1234');
  t.equal(Decimal.parse('7.3179').shift(3).floor(), 7317n);
  t.equal(Decimal.parse('-0.0001').floor(), -1n, 'floor goes toward minus infinity');
  t.equal(Decimal.parse('-2').floor(), -2n);
  t.equal(Decimal.parse('2.5').cmp(Decimal.parse('2.50')), 0);
  t.equal(Decimal.parse('2.4').cmp(Decimal.parse('2.5')), -1);
});

t.test('grams to tonnes', async (t) => {
  t.equal(gramsToTonnes(7317n), '0.007317');
  t.equal(gramsToTonnes(-1500000n), '-1.5');
  t.equal(gramsToTonnes(0n), '0');
});
