/**
 * A strict JSON parser (RFC 8259) that keeps numbers as their exact literal text, so a value is
 * taken from its decimal text and never from a binary float.
 *
 * Stricter than JSON.parse where the RFC leaves room: duplicate member names, a byte-order mark,
 * lone surrogates (raw or escaped) and nesting deeper than `maxDepth` are errors. Everything
 * JSON.parse rejects is rejected too (NaN, Infinity, trailing commas, comments, single quotes,
 * control characters in strings, leading zeros, "+1", ".5", "1.").
 * Objects are created without a prototype, so "__proto__" is an ordinary member name.
 */
import { DomainError, errors } from './errors.ts';

/** A JSON number, kept as the literal text it was written with (e.g. "81234.50", "1e3"). */
export class JsonNumber {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  /** Whether the literal is a plain integer: no fraction, no exponent ("-0" counts). */
  isIntegerLiteral(): boolean {
    return INT_LITERAL_RE.test(this.text);
  }
  toString(): string {
    return this.text;
  }
  toJSON(): string {
    return this.text;
  }
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export const DEFAULT_MAX_DEPTH = 32;

/** Thrown for any text that is not valid JSON; `position` is the UTF-16 offset of the problem. */
export class JsonParseError extends DomainError {
  readonly position: number;
  constructor(message: string, position: number) {
    super(errors.INVALID_JSON.code, `${message} at position ${position}`, errors.INVALID_JSON.statusCode);
    this.name = 'JsonParseError';
    this.position = position;
  }
}

export interface ParseOptions {
  /** Maximum nesting of arrays/objects (the root container is depth 1). Default 32. */
  maxDepth?: number;
}

export interface ParsedDocument {
  value: JsonValue;
  /** When the root is an array: the exact source text of each element, in order. */
  elementTexts?: string[];
}

const INT_LITERAL_RE = /^-?(?:0|[1-9]\d*)$/;

export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);
}

/** Parses `text` as one JSON value. Throws JsonParseError for anything that is not strict JSON. */
export function parseJson(text: string, opts: ParseOptions = {}): JsonValue {
  return new Parser(text, opts.maxDepth ?? DEFAULT_MAX_DEPTH, false).document().value;
}

/** Like parseJson, and also returns the source text of each element when the root is an array. */
export function parseJsonDocument(text: string, opts: ParseOptions = {}): ParsedDocument {
  return new Parser(text, opts.maxDepth ?? DEFAULT_MAX_DEPTH, true).document();
}

/** Cuts `text` to at most `maxBytes` UTF-8 bytes without splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  // Fast path: every UTF-16 unit is at most 3 UTF-8 bytes.
  if (text.length * 3 <= maxBytes) return text;
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let n: number;
    let units = 1;
    if (c < 0x80) n = 1;
    else if (c < 0x800) n = 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n = 4;
      units = 2;
    } else n = 3;
    if (bytes + n > maxBytes) return text.slice(0, i);
    bytes += n;
    i += units - 1;
  }
  return text;
}

const enum C {
  TAB = 0x09,
  LF = 0x0a,
  CR = 0x0d,
  SPACE = 0x20,
  QUOTE = 0x22,
  PLUS = 0x2b,
  COMMA = 0x2c,
  MINUS = 0x2d,
  DOT = 0x2e,
  SLASH = 0x2f,
  ZERO = 0x30,
  NINE = 0x39,
  COLON = 0x3a,
  UPPER_E = 0x45,
  LBRACKET = 0x5b,
  BACKSLASH = 0x5c,
  RBRACKET = 0x5d,
  LOWER_E = 0x65,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
}

class Parser {
  private pos = 0;
  private readonly text: string;
  private readonly maxDepth: number;
  private readonly wantSpans: boolean;

  constructor(text: string, maxDepth: number, wantSpans: boolean) {
    this.text = text;
    this.maxDepth = maxDepth;
    this.wantSpans = wantSpans;
  }

  document(): ParsedDocument {
    this.ws();
    let elementTexts: string[] | undefined;
    let value: JsonValue;
    if (this.wantSpans && this.text.charCodeAt(this.pos) === C.LBRACKET) {
      elementTexts = [];
      value = this.array(1, elementTexts);
    } else {
      value = this.value(0);
    }
    this.ws();
    if (this.pos !== this.text.length) this.fail('unexpected data after the JSON value');
    return elementTexts ? { value, elementTexts } : { value };
  }

  private fail(message: string, at = this.pos): never {
    throw new JsonParseError(message, at);
  }

  private ws(): void {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === C.SPACE || c === C.LF || c === C.CR || c === C.TAB) p++;
      else break;
    }
    this.pos = p;
  }

  private value(depth: number): JsonValue {
    const c = this.text.charCodeAt(this.pos);
    switch (c) {
      case C.LBRACE:
        return this.object(depth + 1);
      case C.LBRACKET:
        return this.array(depth + 1);
      case C.QUOTE:
        return this.string();
      case 0x74: // t
        return this.literal('true', true);
      case 0x66: // f
        return this.literal('false', false);
      case 0x6e: // n
        return this.literal('null', null);
      default:
        if (c === C.MINUS || (c >= C.ZERO && c <= C.NINE)) return this.number();
        if (Number.isNaN(c)) this.fail('unexpected end of input');
        return this.fail(`unexpected character ${JSON.stringify(this.text[this.pos])}`);
    }
  }

  private literal<T extends JsonValue>(word: string, v: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail('invalid literal');
    this.pos += word.length;
    return v;
  }

  private number(): JsonNumber {
    const t = this.text;
    const start = this.pos;
    let p = start;
    if (t.charCodeAt(p) === C.MINUS) p++;
    let c = t.charCodeAt(p);
    if (c === C.ZERO) {
      p++;
    } else if (c >= 0x31 && c <= C.NINE) {
      do p++;
      while ((c = t.charCodeAt(p)) >= C.ZERO && c <= C.NINE);
    } else {
      this.fail('invalid number', p);
    }
    if (t.charCodeAt(p) === C.DOT) {
      p++;
      c = t.charCodeAt(p);
      if (!(c >= C.ZERO && c <= C.NINE)) this.fail('digit expected after decimal point', p);
      do p++;
      while ((c = t.charCodeAt(p)) >= C.ZERO && c <= C.NINE);
    }
    c = t.charCodeAt(p);
    if (c === C.LOWER_E || c === C.UPPER_E) {
      p++;
      c = t.charCodeAt(p);
      if (c === C.PLUS || c === C.MINUS) p++;
      c = t.charCodeAt(p);
      if (!(c >= C.ZERO && c <= C.NINE)) this.fail('digit expected in exponent', p);
      do p++;
      while ((c = t.charCodeAt(p)) >= C.ZERO && c <= C.NINE);
    }
    this.pos = p;
    return new JsonNumber(t.slice(start, p));
  }

  private string(): string {
    const t = this.text;
    let p = this.pos + 1; // after the opening quote
    let out = '';
    let chunk = p;
    for (;;) {
      if (p >= t.length) this.fail('unterminated string', p);
      const c = t.charCodeAt(p);
      if (c === C.QUOTE) {
        out += t.slice(chunk, p);
        this.pos = p + 1;
        return out;
      }
      if (c < 0x20) this.fail('control character in string', p);
      if (c === C.BACKSLASH) {
        out += t.slice(chunk, p);
        p = this.escape(p, (s) => (out += s));
        chunk = p;
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        // Raw surrogates are only valid as a high+low pair.
        if (c <= 0xdbff && (t.charCodeAt(p + 1) & 0xfc00) === 0xdc00) {
          p += 2;
          continue;
        }
        this.fail('lone surrogate in string', p);
      }
      p++;
    }
  }

  /** Decodes the escape at `p` (the backslash); returns the position after it. */
  private escape(p: number, emit: (s: string) => void): number {
    const t = this.text;
    const e = t.charCodeAt(p + 1);
    switch (e) {
      case C.QUOTE:
        emit('"');
        return p + 2;
      case C.BACKSLASH:
        emit('\\');
        return p + 2;
      case C.SLASH:
        emit('/');
        return p + 2;
      case 0x62:
        emit('\b');
        return p + 2;
      case 0x66:
        emit('\f');
        return p + 2;
      case 0x6e:
        emit('\n');
        return p + 2;
      case 0x72:
        emit('\r');
        return p + 2;
      case 0x74:
        emit('\t');
        return p + 2;
      case 0x75: {
        const u = this.hex4(p + 2);
        if (u >= 0xd800 && u <= 0xdbff) {
          // A high surrogate must be followed by an escaped low surrogate.
          if (t.charCodeAt(p + 6) === C.BACKSLASH && t.charCodeAt(p + 7) === 0x75) {
            const lo = this.hex4(p + 8);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
              emit(String.fromCharCode(u, lo));
              return p + 12;
            }
          }
          this.fail('lone surrogate escape', p);
        }
        if (u >= 0xdc00 && u <= 0xdfff) this.fail('lone surrogate escape', p);
        emit(String.fromCharCode(u));
        return p + 6;
      }
      default:
        return this.fail('invalid escape', p);
    }
  }

  private hex4(p: number): number {
    const h = this.text.slice(p, p + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail('invalid \\u escape', p);
    return parseInt(h, 16);
  }

  private array(depth: number, spans?: string[]): JsonValue[] {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`);
    this.pos++; // [
    const out: JsonValue[] = [];
    this.ws();
    if (this.text.charCodeAt(this.pos) === C.RBRACKET) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.ws();
      const start = this.pos;
      out.push(this.value(depth));
      if (spans) spans.push(this.text.slice(start, this.pos));
      this.ws();
      const c = this.text.charCodeAt(this.pos);
      if (c === C.COMMA) {
        this.pos++;
        continue;
      }
      if (c === C.RBRACKET) {
        this.pos++;
        return out;
      }
      this.fail("',' or ']' expected");
    }
  }

  private object(depth: number): JsonObject {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`);
    this.pos++; // {
    const out = Object.create(null) as JsonObject;
    this.ws();
    if (this.text.charCodeAt(this.pos) === C.RBRACE) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.text.charCodeAt(this.pos) !== C.QUOTE) this.fail('member name expected');
      const keyAt = this.pos;
      const key = this.string();
      if (Object.prototype.hasOwnProperty.call(out, key)) this.fail(`duplicate member name ${JSON.stringify(key)}`, keyAt);
      this.ws();
      if (this.text.charCodeAt(this.pos) !== C.COLON) this.fail("':' expected");
      this.pos++;
      this.ws();
      out[key] = this.value(depth);
      this.ws();
      const c = this.text.charCodeAt(this.pos);
      if (c === C.COMMA) {
        this.pos++;
        continue;
      }
      if (c === C.RBRACE) {
        this.pos++;
        return out;
      }
      this.fail("',' or '}' expected");
    }
  }
}
