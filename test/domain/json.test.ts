import t from 'tap';
import { JsonNumber, JsonParseError, isJsonObject, parseJson, parseJsonDocument, truncateUtf8, type JsonValue } from '../../domain/json.ts';

/** Converts our tree to plain JS (numbers as their text) for deep comparison. */
function plain(v: JsonValue): unknown {
  if (v instanceof JsonNumber) return { num: v.text };
  if (Array.isArray(v)) return v.map(plain);
  if (isJsonObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

t.test('numbers keep their exact literal text', async (t) => {
  const v = parseJson('{"a": 81234.50, "b": 1e3, "c": -0, "d": 0.1, "e": 12345678901234567890.123456789}');
  t.ok(isJsonObject(v));
  if (!isJsonObject(v)) return;
  t.equal((v.a as JsonNumber).text, '81234.50', 'trailing zero kept');
  t.equal((v.b as JsonNumber).text, '1e3');
  t.equal((v.c as JsonNumber).text, '-0');
  t.equal((v.d as JsonNumber).text, '0.1');
  t.equal((v.e as JsonNumber).text, '12345678901234567890.123456789', 'beyond float precision, kept exactly');
  t.ok((v.c as JsonNumber).isIntegerLiteral());
  t.notOk((v.b as JsonNumber).isIntegerLiteral(), '1e3 is not an integer literal');
});

t.test('valid documents parse like JSON.parse', async (t) => {
  const docs = [
    '{"seq":1,"ts":"2026-11-22T06:00:00.000Z","metric":"electricity_import","value":81234.5,"unit":"kWh"}',
    ' [ 1 , true , false , null , "x" , [ ] , { } ] ',
    '"\\u00e9\\n\\t\\"\\\\\\/\\b\\f\\r"',
    '"\\ud83d\\ude00 and raw 😀"',
    '{"nested":{"a":[{"b":[]}]}}',
    '0',
    '-1.5E+10',
  ];
  for (const d of docs) {
    const ours = JSON.stringify(plain(parseJson(d)), (_k, x) => (x && typeof x === 'object' && 'num' in x ? Number(x.num) : x));
    t.equal(ours, JSON.stringify(JSON.parse(d)), d);
  }
});

t.test('invalid JSON is a typed error', async (t) => {
  const bad: Record<string, string> = {
    NaN: '{"value": NaN}',
    Infinity: '{"value": Infinity}',
    minusInfinity: '[-Infinity]',
    trailingCommaArray: '[1, 2,]',
    trailingCommaObject: '{"a": 1,}',
    lineComment: '{"a": 1} // c',
    blockComment: '{/* c */"a": 1}',
    singleQuotes: "{'a': 1}",
    unquotedKey: '{a: 1}',
    leadingZero: '012',
    plusSign: '+1',
    bareDot: '.5',
    trailingDot: '1.',
    hex: '0x10',
    emptyExponent: '1e',
    loneHighEscape: '"\\ud800"',
    loneLowEscape: '"\\udc00"',
    highThenNonLow: '"\\ud800\\u0041"',
    loneRawSurrogate: '"\ud800"',
    controlChar: '"a\u0001b"',
    rawNewlineInString: '"a\nb"',
    badEscape: '"\\x41"',
    shortUnicode: '"\\u12"',
    unterminated: '"abc',
    empty: '',
    onlySpace: '   ',
    twoValues: '1 2',
    duplicateKey: '{"value": 1, "value": 2}',
    bom: '\ufeff{}',
    nbspWhitespace: '\u00a0{}',
    trueish: 'tru',
    missingColon: '{"a" 1}',
    missingComma: '[1 2]',
    unclosedArray: '[1',
  };
  for (const [name, text] of Object.entries(bad)) {
    t.throws(() => parseJson(text), JsonParseError, name);
    let threw: unknown;
    try {
      parseJson(text);
    } catch (e) {
      threw = e;
    }
    t.equal((threw as JsonParseError).code, 'INVALID_JSON', `${name}: code`);
    t.type((threw as JsonParseError).position, 'number', `${name}: position`);
  }
});

t.test('depth limit', async (t) => {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
  t.doesNotThrow(() => parseJson(deep(32)));
  t.throws(() => parseJson(deep(33)), JsonParseError);
  t.throws(() => parseJson(deep(100000)), JsonParseError, 'no stack overflow on very deep input');
  t.doesNotThrow(() => parseJson(deep(3), { maxDepth: 3 }));
  t.throws(() => parseJson('{"a":{"b":{}}}', { maxDepth: 2 }), JsonParseError);
});

t.test('__proto__ is an ordinary member, no prototype pollution', async (t) => {
  const v = parseJson('{"__proto__": {"polluted": true}, "constructor": 1}');
  t.ok(isJsonObject(v));
  if (!isJsonObject(v)) return;
  t.same(Object.keys(v), ['__proto__', 'constructor']);
  t.equal(({} as Record<string, unknown>).polluted, undefined);
});

t.test('element texts of a root array', async (t) => {
  const doc = parseJsonDocument('[ {"a": 1.50} ,2,  "x\\"y" , [ 3 ]]');
  t.same(doc.elementTexts, ['{"a": 1.50}', '2', '"x\\"y"', '[ 3 ]']);
  t.equal(parseJsonDocument('{"a":1}').elementTexts, undefined);
});

t.test('truncateUtf8 cuts at a character boundary', async (t) => {
  t.equal(truncateUtf8('abc', 10), 'abc');
  t.equal(truncateUtf8('a'.repeat(5000), 4096).length, 4096);
  const euro = '€'.repeat(2000); // 3 bytes each
  const cut = truncateUtf8(euro, 4096);
  t.equal(Buffer.byteLength(cut), 4095);
  t.equal(cut, '€'.repeat(1365));
  const emoji = '😀'.repeat(2000); // 4 bytes, 2 UTF-16 units each
  const cut2 = truncateUtf8(emoji, 4098);
  t.equal(Buffer.byteLength(cut2), 4096);
  t.equal(cut2, '😀'.repeat(1024), 'no half surrogate pair');
});
