/**
 * Line protocol and InfluxQL quoting (pure): every separator that comes from data is escaped, and what
 * cannot be carried exactly is refused. The real-server round trip of hostile strings is in
 * influx.test.ts.
 */
import t from 'tap';
import { encodeLine, escapeKey, influxqlIdent, influxqlInt, influxqlString, quoteStringField } from '../../store/influx/line.ts';

t.test('tag keys and values, field keys: comma, equals sign and space are escaped', async (t) => {
  t.equal(escapeKey('a,b=c d'), 'a\\,b\\=c\\ d');
  t.equal(escapeKey('dev-1_A'), 'dev-1_A', 'ids pass unchanged');
  t.equal(escapeKey(`q"uote's`), `q"uote's`, 'quotes are plain in tags');
  for (const bad of ['', 'a\\b', 'trailing\\', 'a\nb', 'a\rb']) t.throws(() => escapeKey(bad), { code: 'LINE_PROTOCOL' }, JSON.stringify(bad));
});

t.test('string fields: quotes and backslashes escaped, line breaks refused', async (t) => {
  t.equal(quoteStringField('k"W\\h'), '"k\\"W\\\\h"');
  t.equal(quoteStringField('a,b=c d'), '"a,b=c d"', 'separators are plain inside quotes');
  t.throws(() => quoteStringField('x\ny'), { code: 'LINE_PROTOCOL' });
});

t.test('a whole line: sorted tags, typed fields, nanosecond time', async (t) => {
  const line = encodeLine('reading', { metric: 'm', device: 'd,x=1 y=2' }, { seq: 5n, value: '1.5" z=1', reset: true, f: 2.5 }, 1767225600000000005n);
  t.equal(line, 'reading,device=d\\,x\\=1\\ y\\=2,metric=m seq=5i,value="1.5\\" z=1",reset=true,f=2.5 1767225600000000005');
  // What a parser sees: split on unescaped spaces outside quotes -> exactly three parts.
  const parts = line.match(/(?:\\.|"(?:\\.|[^"\\])*"|[^ ])+/g);
  t.equal(parts?.length, 3, 'the hostile values did not add a section');
  t.throws(() => encodeLine('m', {}, {}, 1n), { code: 'LINE_PROTOCOL' }, 'a point needs a field');
  t.throws(() => encodeLine('m', {}, { f: Number.NaN }, 1n), { code: 'LINE_PROTOCOL' });
  t.throws(() => encodeLine('m', {}, { f: 2n ** 63n }, 1n), { code: 'LINE_PROTOCOL' });
});

t.test('InfluxQL literals', async (t) => {
  t.equal(influxqlString(`a'b\\c`), `'a\\'b\\\\c'`);
  t.equal(influxqlString(`x' OR '1'='1`), `'x\\' OR \\'1\\'=\\'1'`, 'a quote cannot close the literal');
  t.equal(influxqlIdent('we"ird'), '"we\\"ird"');
  t.throws(() => influxqlString('a\nb'));
  t.equal(influxqlInt(42), '42');
  t.throws(() => influxqlInt(1.5));
  t.throws(() => influxqlInt(Number.MAX_SAFE_INTEGER + 2));
});
