/**
 * Exact decimal arithmetic on BigInt: value = mantissa * 10^-scale.
 * Every quantity that can decide a gram goes through this type; binary floating point never does.
 */
import { errors } from './errors.ts';

const DECIMAL_RE = /^(-)?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;
/** Canonical text of a non-negative decimal, as Decimal.toString() prints it (no exponent, no trailing zeros). */
export const CANONICAL_RE = /^(?:0|[1-9]\d*)(?:\.\d*[1-9])?$/;
/** Largest exponent accepted when parsing, so "1e999999" cannot allocate a huge BigInt. */
const MAX_EXPONENT = 40;

export class Decimal {
  readonly mantissa: bigint;
  readonly scale: number;

  private constructor(mantissa: bigint, scale: number) {
    this.mantissa = mantissa;
    this.scale = scale;
  }

  static of(mantissa: bigint, scale = 0): Decimal {
    return new Decimal(mantissa, scale).normalise();
  }

  static readonly ZERO = new Decimal(0n, 0);

  /** Parses decimal text (JSON number grammar, optional exponent). Throws DomainError on anything else. */
  static parse(text: string): Decimal {
    const m = DECIMAL_RE.exec(text.trim());
    if (!m) throw errors.INVALID_DECIMAL(`not a decimal number: ${JSON.stringify(text).slice(0, 40)}`);
    const [, sign, int, frac = '', expText] = m;
    const exp = expText === undefined ? 0 : Number(expText);
    if (!Number.isSafeInteger(exp) || Math.abs(exp) > MAX_EXPONENT || int.length + frac.length > 60) {
      throw errors.INVALID_DECIMAL(`decimal out of range: ${text.slice(0, 40)}`);
    }
    let mantissa = BigInt(int + frac);
    if (sign) mantissa = -mantissa;
    let scale = frac.length - exp;
    if (scale < 0) {
      mantissa *= 10n ** BigInt(-scale);
      scale = 0;
    }
    return new Decimal(mantissa, scale).normalise();
  }

  /** Accepts a Decimal, decimal text, bigint or a safe integer number (never a fractional float). */
  static from(v: Decimal | string | bigint | number): Decimal {
    if (v instanceof Decimal) return v;
    if (typeof v === 'bigint') return new Decimal(v, 0);
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw errors.INVALID_DECIMAL(`not a finite number: ${v}`);
      // String(n) is the shortest text that round-trips; fine for values that came in as JSON text.
      return Decimal.parse(String(v));
    }
    return Decimal.parse(v);
  }

  private normalise(): Decimal {
    let { mantissa, scale } = this;
    if (mantissa === 0n) return scale === 0 ? this : new Decimal(0n, 0);
    while (scale > 0 && mantissa % 10n === 0n) {
      mantissa /= 10n;
      scale--;
    }
    return scale === this.scale ? this : new Decimal(mantissa, scale);
  }

  private static align(a: Decimal, b: Decimal): [bigint, bigint, number] {
    const scale = Math.max(a.scale, b.scale);
    return [a.mantissa * 10n ** BigInt(scale - a.scale), b.mantissa * 10n ** BigInt(scale - b.scale), scale];
  }

  add(other: Decimal): Decimal {
    const [x, y, s] = Decimal.align(this, other);
    return new Decimal(x + y, s).normalise();
  }

  sub(other: Decimal): Decimal {
    const [x, y, s] = Decimal.align(this, other);
    return new Decimal(x - y, s).normalise();
  }

  mul(other: Decimal): Decimal {
    return new Decimal(this.mantissa * other.mantissa, this.scale + other.scale).normalise();
  }

  /** this * 10^k, exact (k may be negative). */
  shift(k: number): Decimal {
    if (k >= 0) return new Decimal(this.mantissa * 10n ** BigInt(Math.max(0, k - this.scale)), Math.max(0, this.scale - k)).normalise();
    return new Decimal(this.mantissa, this.scale - k).normalise();
  }

  neg(): Decimal {
    return new Decimal(-this.mantissa, this.scale);
  }

  cmp(other: Decimal): -1 | 0 | 1 {
    const [x, y] = Decimal.align(this, other);
    return x < y ? -1 : x > y ? 1 : 0;
  }

  isZero(): boolean {
    return this.mantissa === 0n;
  }

  isNegative(): boolean {
    return this.mantissa < 0n;
  }

  /** Largest integer <= this (toward minus infinity). */
  floor(): bigint {
    if (this.scale === 0) return this.mantissa;
    const d = 10n ** BigInt(this.scale);
    const q = this.mantissa / d; // truncates toward zero
    return this.mantissa < 0n && q * d !== this.mantissa ? q - 1n : q;
  }

  /** Canonical text: no exponent, no trailing zeros, "-" only for negatives. */
  toString(): string {
    const neg = this.mantissa < 0n;
    const digits = (neg ? -this.mantissa : this.mantissa).toString();
    if (this.scale === 0) return (neg ? '-' : '') + digits;
    const padded = digits.padStart(this.scale + 1, '0');
    const int = padded.slice(0, padded.length - this.scale);
    const frac = padded.slice(padded.length - this.scale);
    return `${neg ? '-' : ''}${int}.${frac}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/**
 * The one comparison of decimal values given as text ("3600" equals "3600.0" and "36e2"): exact, by
 * digits when both are canonical and non-negative (the ingest hot path), else through Decimal.cmp.
 * Throws INVALID_DECIMAL when either is not a decimal. Equality is `compareDecimalText(a, b) === 0`.
 */
export function compareDecimalText(a: string, b: string): -1 | 0 | 1 {
  if (!CANONICAL_RE.test(a) || !CANONICAL_RE.test(b)) return Decimal.parse(a).cmp(Decimal.parse(b));
  const ia = a.indexOf('.');
  const ib = b.indexOf('.');
  const intA = ia < 0 ? a : a.slice(0, ia);
  const intB = ib < 0 ? b : b.slice(0, ib);
  if (intA.length !== intB.length) return intA.length < intB.length ? -1 : 1;
  if (intA !== intB) return intA < intB ? -1 : 1;
  // No trailing zeros, so fractions compare as strings ("45" < "5": 0.45 < 0.5; "" < "1").
  const fa = ia < 0 ? '' : a.slice(ia + 1);
  const fb = ib < 0 ? '' : b.slice(ib + 1);
  return fa === fb ? 0 : fa < fb ? -1 : 1;
}

/** Formats integer grams as tonnes with 6 decimals, e.g. 7317n -> "0.007317". */
export function gramsToTonnes(grams: bigint): string {
  return Decimal.of(grams, 6).toString();
}
