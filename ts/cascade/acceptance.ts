// Live acceptance estimates per draft source.
//
// Two levels:
//  - per source (a draft variant, 'pld', ...): the acceptance rate of each verification step
//    (accepted / evaluated tokens of that source; a token is evaluated when its parent was
//    accepted) goes into an exponentially weighted mean over the last `window` steps
//    (CAS-Spec: lambda = 0.7 over 20 steps). During warm-up a prior pseudo-observation fills the
//    part of the window not yet observed, so early estimates are not whipsawed by one step.
//  - per (source, bucket): per-token outcomes with slowly decaying counts, shrunk towards the
//    source's rate. Buckets carry per-token confidence: the draft's top-1 probability for a model
//    variant, the n-gram match length and offset for prompt lookup, the rank for sibling
//    alternatives, or the agreement of an intermediate draft (vertical cascade).

/** Exponentially weighted mean of the last `window` observations, with a warm-up prior. */
export class WindowedEma {
  private readonly buf: Float64Array;
  private n = 0;
  private cached: number;

  constructor(
    readonly lambda = 0.7,
    readonly window = 20,
    private prior = 0.5,
    readonly priorWeight = 1,
  ) {
    this.buf = new Float64Array(window);
    this.cached = prior;
  }

  get count(): number {
    return this.n;
  }

  get value(): number {
    return this.cached;
  }

  setPrior(p: number): void {
    this.prior = p;
    this.recompute();
  }

  push(x: number): void {
    this.buf[this.n % this.window] = x;
    this.n++;
    this.recompute();
  }

  private recompute(): void {
    const m = Math.min(this.n, this.window);
    let num = 0;
    let den = 0;
    let w = 1;
    for (let i = 0; i < m; i++) {
      num += w * this.buf[(this.n - 1 - i) % this.window];
      den += w;
      w *= this.lambda;
    }
    if (this.n < this.window) {
      // Warm-up: the prior stands in for the unobserved rest of the window.
      const pw = this.priorWeight * w;
      num += pw * this.prior;
      den += pw;
    }
    this.cached = den > 0 ? num / den : this.prior;
  }
}

/** Bernoulli counts that decay by `decay` per observation (a long, soft window). */
export class DecayedRate {
  acc = 0;
  tot = 0;
  constructor(private readonly decay: number) {}
  push(accepted: boolean): void {
    this.acc = this.acc * this.decay + (accepted ? 1 : 0);
    this.tot = this.tot * this.decay + 1;
  }
  shrunk(base: number, kappa: number): number {
    return (this.acc + kappa * base) / (this.tot + kappa);
  }
}

export interface TokenOutcome {
  source: string;
  /** Confidence bucket (see confidenceBucket / lookupBucket), or '' for none. */
  bucket: string;
  accepted: boolean;
}

export interface AcceptanceOptions {
  lambda?: number;
  window?: number;
  /** Per-token decay of bucket counts (default 0.98: about the last 50 tokens of a bucket). */
  tokenDecay?: number;
  /** Pseudo-count pulling bucket rates towards the source rate. */
  shrink?: number;
  /** Prior rate of a source never seen (default 0.4). */
  defaultPrior?: number;
  /** Per idle step, the remaining gap to the prior shrinks by this factor (default 0.98). */
  idleDecay?: number;
  /** Lowest rate reported (default 0.02). */
  floor?: number;
  /** Exploration bonus scale c of optimistic() (default 0.3; 0 = none). */
  exploration?: number;
}

export interface SourceSummary {
  /** Live step-EMA acceptance rate. */
  rate: number;
  evaluated: number;
  accepted: number;
  steps: number;
}

export class AcceptanceTracker {
  private readonly sources = new Map<string, { ema: WindowedEma; tokens: DecayedRate; evaluated: number; accepted: number; idle: number }>();
  private readonly buckets = new Map<string, DecayedRate>();
  private readonly priors = new Map<string, number>();
  private readonly lambda: number;
  private readonly window: number;
  private readonly tokenDecay: number;
  private readonly shrink: number;
  private readonly defaultPrior: number;
  private readonly idleDecay: number;
  private readonly floor: number;
  private readonly exploration: number;
  // Per-step scratch, reused.
  private readonly stepEval = new Map<string, number>();
  private readonly stepAcc = new Map<string, number>();

  constructor(opts: AcceptanceOptions = {}) {
    this.lambda = opts.lambda ?? 0.7;
    this.window = opts.window ?? 20;
    this.tokenDecay = opts.tokenDecay ?? 0.98;
    this.shrink = opts.shrink ?? 4;
    this.defaultPrior = opts.defaultPrior ?? 0.4;
    this.idleDecay = opts.idleDecay ?? 0.98;
    this.floor = opts.floor ?? 0.02;
    this.exploration = opts.exploration ?? 0.3;
  }

  private source(key: string) {
    let s = this.sources.get(key);
    if (!s) {
      s = {
        ema: new WindowedEma(this.lambda, this.window, this.priors.get(key) ?? this.defaultPrior),
        tokens: new DecayedRate(this.tokenDecay),
        evaluated: 0,
        accepted: 0,
        idle: 0,
      };
      this.sources.set(key, s);
    }
    return s;
  }

  /**
   * Warm start from earlier generations: the source's prior becomes `rate`, backed by `count`
   * pseudo-tokens of evidence (so its exploration bonus starts small).
   */
  warmStart(source: string, rate: number, count: number): void {
    this.setPrior(source, rate);
    const s = this.source(source);
    s.tokens.acc = rate * count;
    s.tokens.tot = count;
  }

  /** Decayed number of verified tokens behind a source's rate (warm-start pseudo-tokens included). */
  evidence(source: string): number {
    return this.sources.get(source)?.tokens.tot ?? 0;
  }

  /** Per source: live rate and decayed token count, to warm-start a later tracker. */
  knowledge(): Map<string, { rate: number; count: number }> {
    const out = new Map<string, { rate: number; count: number }>();
    for (const [k, s] of this.sources) if (s.tokens.tot > 0) out.set(k, { rate: s.tokens.acc / s.tokens.tot, count: s.tokens.tot });
    return out;
  }

  /** Sets the warm-up prior of a source (e.g. a skip plan's measured agreement). */
  setPrior(source: string, rate: number): void {
    this.priors.set(source, rate);
    this.sources.get(source)?.ema.setPrior(rate);
  }

  /**
   * The source's live acceptance rate (step EMA). Exploration: while a source goes unused its
   * estimate relaxes back towards its prior (by 1 - idleDecay^idleSteps), so a source that did
   * badly once is tried again later (the text may have changed), and never drops below `floor`.
   */
  rate(source: string): number {
    const s = this.sources.get(source);
    const prior = this.priors.get(source) ?? this.defaultPrior;
    if (!s) return prior;
    let r = s.ema.value;
    if (s.idle > 0 && prior > r) r += (prior - r) * (1 - Math.pow(this.idleDecay, s.idle));
    return r < this.floor ? this.floor : r;
  }

  /** Calibrated probability that a token from `source` in `bucket` is accepted, given its parent is. */
  estimate(source: string, bucket: string): number {
    const base = this.rate(source);
    if (!bucket) return base;
    const b = this.buckets.get(source + '|' + bucket);
    const r = b ? b.shrunk(base, this.shrink) : base;
    return r < 0.001 ? 0.001 : r > 0.995 ? 0.995 : r;
  }

  /**
   * Optimistic estimate for decisions (optimism under uncertainty): the calibrated estimate plus
   * c / sqrt(1 + n), n the (decayed) number of tokens behind it. A source or bucket with little
   * evidence gets tried, so its real rate can be learned; the bonus fades as evidence accumulates.
   */
  optimistic(source: string, bucket: string, c = this.exploration): number {
    const est = this.estimate(source, bucket);
    if (c <= 0) return est;
    const b = bucket ? this.buckets.get(source + '|' + bucket) : undefined;
    const n = b ? b.tot : bucket ? 0 : (this.sources.get(source)?.tokens.tot ?? 0);
    const r = est + c / Math.sqrt(1 + n);
    return r > 0.99 ? 0.99 : r;
  }

  /** Records one verification step's outcomes for every evaluated draft token. */
  recordStep(outcomes: Iterable<TokenOutcome>): void {
    this.stepEval.clear();
    this.stepAcc.clear();
    for (const o of outcomes) {
      this.source(o.source).tokens.push(o.accepted);
      this.stepEval.set(o.source, (this.stepEval.get(o.source) ?? 0) + 1);
      if (o.accepted) this.stepAcc.set(o.source, (this.stepAcc.get(o.source) ?? 0) + 1);
      if (o.bucket) {
        const key = o.source + '|' + o.bucket;
        let b = this.buckets.get(key);
        if (!b) this.buckets.set(key, (b = new DecayedRate(this.tokenDecay)));
        b.push(o.accepted);
      }
    }
    for (const s of this.sources.values()) s.idle++;
    for (const [src, e] of this.stepEval) {
      const a = this.stepAcc.get(src) ?? 0;
      const s = this.source(src);
      s.ema.push(a / e);
      s.evaluated += e;
      s.accepted += a;
      s.idle = 0;
    }
  }

  summary(): Record<string, SourceSummary> {
    const out: Record<string, SourceSummary> = {};
    for (const [k, s] of this.sources) out[k] = { rate: round3(s.ema.value), evaluated: s.evaluated, accepted: s.accepted, steps: s.ema.count };
    return out;
  }
}

/** Confidence buckets of a draft's top-1 probability, by index (see confidenceIndex). */
export const CONFIDENCE_BUCKETS = ['c0', 'c3', 'c5', 'c7', 'c9'] as const;

export function confidenceIndex(p: number): number {
  return p >= 0.9 ? 4 : p >= 0.7 ? 3 : p >= 0.5 ? 2 : p >= 0.3 ? 1 : 0;
}

/** Bucket of a draft's top-1 probability. */
export function confidenceBucket(p: number): string {
  return CONFIDENCE_BUCKETS[confidenceIndex(p)];
}

/**
 * Prompt-lookup buckets by index 4 * (n - 1) + (offset class - 1) (see lookupIndex). Offset
 * classes 1, 2-3, 4-7, 8+: deep in a proposal that has been right so far the text is usually being
 * copied and nearly every next token is right too, which one class for all offsets past 3 hid.
 */
export const LOOKUP_BUCKETS = ['n1o1', 'n1o2', 'n1o3', 'n1o4', 'n2o1', 'n2o2', 'n2o3', 'n2o4', 'n3o1', 'n3o2', 'n3o3', 'n3o4'] as const;

export function lookupIndex(n: number, offset: number): number {
  return 4 * (Math.min(n, 3) - 1) + (offset <= 1 ? 0 : offset <= 3 ? 1 : offset <= 7 ? 2 : 3);
}

/** Bucket of a prompt-lookup token: match length and position in the proposed continuation. */
export function lookupBucket(n: number, offset: number): string {
  return LOOKUP_BUCKETS[lookupIndex(n, offset)];
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
