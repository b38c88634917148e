/**
 * Seeded randomness for the simulators: no Math.random anywhere in the models, so a run is
 * reproducible from its seed. mulberry32 for streams, a 32-bit string hash for seeding, and a smooth
 * value noise that is a pure function of (seed, time) so devices of one facility agree on the weather.
 */

/** FNV-1a over the UTF-16 code units, then an avalanche (murmur3 fmix32). */
export function hashSeed(...parts: (string | number)[]): number {
  let h = 0x811c9dc5;
  const text = parts.join('\u0000');
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** mulberry32: a 32-bit state, period 2^32; good enough for simulation noise. */
export class Rng {
  state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

/** A deterministic uniform value in [0, 1) for an integer lattice point. */
function lattice(seed: number, k: number): number {
  return fmix32((seed ^ Math.imul(k | 0, 0x9e3779b1)) + Math.imul(Math.floor(k / 4294967296), 0x85ebca6b)) / 4294967296;
}

/**
 * Smooth value noise in [0, 1): lattice values every `periodMs`, cosine-interpolated. A pure function
 * of (seed, t), so it is the same whoever asks and however often.
 */
export function valueNoise(seed: number, t: number, periodMs: number): number {
  const x = t / periodMs;
  const k = Math.floor(x);
  const f = x - k;
  const w = (1 - Math.cos(Math.PI * f)) / 2;
  return lattice(seed, k) * (1 - w) + lattice(seed, k + 1) * w;
}
