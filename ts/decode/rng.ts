// Seeded randomness for sampling. Each sampled position draws its own uniform number from
// (seed, position) alone, so the token sampled at a position does not depend on how many draws
// other positions made: every strategy emits exactly the tokens plain sampling emits for a seed.

/** splitmix32-style mixing of a 32-bit value. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** A uniform number in [0, 1) determined by (seed, position), 53 bits. */
export function positionUniform(seed: number, position: number): number {
  const a = mix32((seed >>> 0) ^ mix32(position * 2 + 1));
  const b = mix32(a ^ 0x9e3779b9 ^ mix32(position * 2 + 2));
  return ((a >>> 5) * 67108864 + (b >>> 6)) / 9007199254740992;
}

/** A seeded stream of uniforms (sfc32), for searches and tests that need many draws. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = () => (s = mix32((s + 0x9e3779b9) >>> 0));
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.uniform();
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t / 4294967296;
  }
}
