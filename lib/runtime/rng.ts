/**
 * Seeded random numbers: one {@link Rng} drives initialisation, batches,
 * timesteps and noise, so a run can be repeated exactly and resumed from a
 * checkpoint (its state is four 32-bit words).
 *
 * The generator is xoshiro128**; seeding goes through splitmix32.
 */

/** Serializable generator state: four unsigned 32-bit integers. */
export type RngState = [number, number, number, number];

/** A small, fast, seedable generator (xoshiro128**). */
export class Rng {
  #s: Uint32Array;
  #spare: number | null = null;

  /** Seeds from an integer, or restores a saved {@link RngState}. */
  constructor(seed: number | RngState) {
    this.#s = new Uint32Array(4);
    if (Array.isArray(seed)) {
      this.#s.set(seed);
      return;
    }
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.#s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if (this.#s.every((v) => v === 0)) this.#s[0] = 1;
  }

  /**
   * The state to store in a checkpoint; `new Rng(state)` or `setState`
   * continues from here. It drops the cached spare normal draw, so the live
   * generator and a restored one continue identically.
   */
  state(): RngState {
    this.#spare = null;
    return [this.#s[0], this.#s[1], this.#s[2], this.#s[3]];
  }

  /** Continues from a saved state. */
  setState(state: RngState): void {
    this.#s.set(state);
    this.#spare = null;
  }

  /** A uniform unsigned 32-bit integer. */
  nextU32(): number {
    const s = this.#s;
    const r = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** A uniform float in [0, 1) with 32 bits of randomness. */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** A standard normal draw (Box–Muller, the spare kept for the next call). */
  normal(): number {
    if (this.#spare !== null) {
      const v = this.#spare;
      this.#spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** A seed for a tfjs random op (`tf.randomNormal(shape, 0, 1, "float32", rng.seed())`). */
  seed(): number {
    return this.nextU32();
  }

  /** Fills a Float32Array with standard normal draws. */
  normalArray(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal();
    return out;
  }

  /** A random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = p[i];
      p[i] = p[j];
      p[j] = tmp;
    }
    return p;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
