// Latency model: predicts the time of any planned forward pass from its shape.
//
// One recursive-least-squares regression (= Bayesian linear regression with a Gaussian prior; no
// forgetting by default, a multiplicative bias term follows drift) per activation-quantization
// mode, on roofline-shaped features of a pass:
//   n       tokens in the pass          nOut  rows whose outputs are wanted (LM head)
//   ctx     committed cache length      fa/fm fraction of attention / MLP sub-layers run
//   t(n, nOut, ctx, fa, fm) ~ w . [1, fa, fm, n, n fa, n fm, nOut, ctx fa, n ctx fa,
//                                  (n-4)+, (n-8)+, (n-16)+, (n-32)+, branches]
// Weight reads are paid once per pass (the constant and fa/fm terms: the memory-bound regime of a
// GPU), arithmetic per token (n terms), the LM head per output row, and attention per token and
// cache entry. The hinge terms (x)+ = max(x, 0) let the cost of n bend where the kernels change
// regime: on a GPU a pass of 1..4 tokens costs about the same, then each tile of tokens adds a
// step (measured on the H200: 0.60, 0.59, 0.59, 0.71, 0.90, 1.29, 2.48 ms for n = 1..64 on
// pycode-small); a straight line through those points is off by up to 10% between them.
// `branches` (leaves - 1 of a tree-shaped pass) prices width: tree attention runs each branch's
// pending tail separately, so a bushy tree costs more than a chain of the same size.
// A new skip plan needs no new calibration: it is just another (fa, fm).
// Samples are weighted by 1/t^2, so the fit minimises relative error (small passes matter as much
// as big ones). Calibration seeds it (calibrate.ts); every measured forward refines it online.

export const FEATURE_DIM = 14;
const HINGES = [4, 8, 16, 32];

export interface PassShape {
  /** Tokens in the pass. */
  n: number;
  /** Output rows (LM head). */
  nOut: number;
  /** Committed cache length. */
  ctx: number;
  /** Fraction of attention sub-layers run (1 = all). */
  fa: number;
  /** Fraction of MLP sub-layers run. */
  fm: number;
  /** Activation-quantization mode (0 = none). */
  quant: number;
  /** Leaves - 1 of the pass's token tree (0 or absent: a chain). */
  branches?: number;
}

export function passFeatures(s: PassShape, out: Float64Array): Float64Array {
  const n = s.n / 16;
  const c = s.ctx / 1024;
  out[0] = 1;
  out[1] = s.fa;
  out[2] = s.fm;
  out[3] = n;
  out[4] = n * s.fa;
  out[5] = n * s.fm;
  out[6] = s.nOut / 16;
  out[7] = c * s.fa;
  out[8] = n * c * s.fa;
  for (let i = 0; i < HINGES.length; i++) out[9 + i] = Math.max(0, s.n - HINGES[i]) / 16;
  out[13] = (s.branches ?? 0) / 16;
  return out;
}

/** Attention / MLP kept fractions of a skip plan (2 entries per layer). */
export function keptFractions(skip: Uint8Array | undefined): { fa: number; fm: number } {
  if (!skip || skip.length === 0) return { fa: 1, fm: 1 };
  const L = skip.length / 2;
  let a = 0;
  let m = 0;
  for (let l = 0; l < L; l++) {
    if (!skip[2 * l]) a++;
    if (!skip[2 * l + 1]) m++;
  }
  return { fa: a / L, fm: m / L };
}

/** Recursive least squares with forgetting, on scaled targets (see LatencyModel). */
export class Rls {
  readonly theta: Float64Array;
  readonly P: Float64Array;
  count = 0;
  private readonly Px: Float64Array;

  constructor(
    readonly dim: number,
    readonly priorVar = 10,
    readonly forget = 0.995,
  ) {
    this.theta = new Float64Array(dim);
    this.P = new Float64Array(dim * dim);
    for (let i = 0; i < dim; i++) this.P[i * dim + i] = priorVar;
    this.Px = new Float64Array(dim);
  }

  predict(x: Float64Array): number {
    let y = 0;
    for (let i = 0; i < this.dim; i++) y += this.theta[i] * x[i];
    return y;
  }

  /** One observation y ~ theta . x with weight w (w = 1 / noise variance). */
  update(x: Float64Array, y: number, w = 1): void {
    const d = this.dim;
    const P = this.P;
    const Px = this.Px;
    let xPx = 0;
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += P[i * d + j] * x[j];
      Px[i] = s;
      xPx += x[i] * s;
    }
    const lam = this.forget;
    const denom = lam / w + xPx;
    const err = y - this.predict(x);
    for (let i = 0; i < d; i++) this.theta[i] += (Px[i] / denom) * err;
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) P[i * d + j] = (P[i * d + j] - (Px[i] * Px[j]) / denom) / lam;
    // Anti-windup: forgetting divides P by lam at every sample, so a direction no sample excites
    // (shapes a generation stopped using) would grow without bound. Keep each variance at most the
    // prior's by scaling its row and column (P stays symmetric positive semi-definite).
    for (let i = 0; i < d; i++) {
      const v = P[i * d + i];
      if (v > this.priorVar) {
        const f = Math.sqrt(this.priorVar / v);
        for (let j = 0; j < d; j++) {
          P[i * d + j] *= f;
          P[j * d + i] *= f;
        }
      }
    }
    this.count++;
  }
}

interface QuantModel {
  /** Time scale (ms) fixed at the first sample: the regression fits t / scale. */
  scale: number;
  rls: Rls;
  /**
   * EMA of log(measured / regression prediction) over online samples: a fast multiplicative
   * correction for systematic shifts (a calibration taken under load, a device that slowed down)
   * while the regression catches up; near 0 when the regression fits.
   */
  logBias: number;
}

export interface LatencyModelJSON {
  version: 1;
  models: { quant: number; scale: number; theta: number[]; P: number[]; count: number; logBias?: number }[];
}

/** Relative prediction errors, a ring of the most recent. */
export class ErrorLog {
  private readonly buf: number[] = [];
  constructor(private readonly size = 200) {}
  push(predicted: number, measured: number): void {
    if (!(measured > 0) || !Number.isFinite(predicted)) return;
    if (this.buf.length >= this.size) this.buf.shift();
    this.buf.push(Math.abs(predicted - measured) / measured);
  }
  get count(): number {
    return this.buf.length;
  }
  /** Median absolute relative error (0.1 = 10%), NaN when empty. */
  median(): number {
    if (this.buf.length === 0) return NaN;
    const s = [...this.buf].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }
}

export class LatencyModel {
  private readonly models = new Map<number, QuantModel>();
  private readonly x = new Float64Array(FEATURE_DIM);
  private readonly x2 = new Float64Array(FEATURE_DIM);
  /** Errors of predictions made just before each online observation, by label. */
  readonly errors = new Map<string, ErrorLog>();

  // priorVar: features and scaled targets are O(1), so a prior of 1e4 on each weight is weak, yet it
  // bounds how far one sample can move a direction nothing else has measured (a 1e6 prior let a
  // single outlier on a rare shape set its weight at will).
  // forget = 1: the regression keeps every sample (calibration included), so shapes a generation
  // stops using keep their measured cost; drift of the device as a whole is the bias term's job.
  constructor(
    readonly forget = 1,
    readonly priorVar = 1e4,
  ) {}

  /** Whether any pass of this quant mode has been observed. */
  knows(quant: number): boolean {
    return (this.models.get(quant)?.rls.count ?? 0) > 0;
  }

  sampleCount(quant = 0): number {
    return this.models.get(quant)?.rls.count ?? 0;
  }

  /** Predicted time (ms) of a pass. Unknown quant modes fall back to the full-precision model. */
  predict(s: PassShape): number {
    const qm = this.models.get(s.quant) ?? this.models.get(0);
    if (!qm || qm.rls.count === 0) return 1 + s.n / 16; // nothing measured yet: a shape-only guess
    return this.raw(qm, s) * Math.exp(qm.logBias);
  }

  /** The regression's prediction alone (no bias correction). */
  private raw(qm: QuantModel, s: PassShape): number {
    passFeatures(s, this.x);
    const y = qm.scale * qm.rls.predict(this.x);
    // Guard against extrapolation below anything plausible.
    return Math.max(y, 0.05 * qm.scale);
  }

  /**
   * Adds a measured pass (ms). Online samples carry a `label` (it groups their prediction errors
   * for statistics) and also drive the bias correction and outlier weighting; calibration samples
   * have none.
   */
  observe(s: PassShape, ms: number, label?: string): void {
    if (!(ms > 0) || !Number.isFinite(ms)) return;
    let qm = this.models.get(s.quant);
    if (!qm) {
      qm = { scale: ms, rls: new Rls(FEATURE_DIM, this.priorVar, this.forget), logBias: 0 };
      this.models.set(s.quant, qm);
    }
    if (label && qm.rls.count >= FEATURE_DIM) {
      let log = this.errors.get(label);
      if (!log) this.errors.set(label, (log = new ErrorLog()));
      log.push(this.predict(s), ms);
    }
    let w = 1;
    if (label && qm.rls.count >= 2 * FEATURE_DIM) {
      const logRatio = Math.log(ms / this.raw(qm, s));
      // A pass 3x off the model and off its recent bias is a one-off (a CUDA graph captured for a
      // new shape, a GC pause), not the cost of that shape: it must not teach the regression.
      if (Math.abs(logRatio - qm.logBias) > Math.log(3)) {
        qm.logBias += 0.05 * (Math.max(-1.5, Math.min(1.5, logRatio)) - qm.logBias);
        return;
      }
      // Robustness: a single sample far off (a GC pause, a burst of load from another process)
      // gets a reduced weight, unless the recent samples say the model is off as a whole.
      const dev = Math.abs(logRatio - qm.logBias) / 0.4;
      if (dev > 1 && Math.abs(qm.logBias) < 0.15) w = 1 / (dev * dev);
      qm.logBias += 0.15 * (Math.max(-1.5, Math.min(1.5, logRatio)) - qm.logBias);
    }
    passFeatures(s, this.x);
    // Relative-error fit: scale features by scale / t and regress onto 1.
    const r = qm.scale / ms;
    for (let i = 0; i < FEATURE_DIM; i++) this.x2[i] = this.x[i] * r;
    qm.rls.update(this.x2, 1, w);
  }

  toJSON(): LatencyModelJSON {
    return {
      version: 1,
      models: [...this.models].map(([quant, m]) => ({ quant, scale: m.scale, theta: [...m.rls.theta], P: [...m.rls.P], count: m.rls.count, logBias: m.logBias })),
    };
  }

  static fromJSON(j: LatencyModelJSON, forget = 1, priorVar = 1e4): LatencyModel {
    const lm = new LatencyModel(forget, priorVar);
    if (j?.version !== 1 || !Array.isArray(j.models)) return lm;
    for (const m of j.models) {
      if (m.theta?.length !== FEATURE_DIM || m.P?.length !== FEATURE_DIM * FEATURE_DIM || !(m.scale > 0)) continue;
      const rls = new Rls(FEATURE_DIM, priorVar, forget);
      rls.theta.set(m.theta);
      rls.P.set(m.P);
      rls.count = m.count;
      lm.models.set(m.quant, { scale: m.scale, rls, logBias: Number.isFinite(m.logBias) ? m.logBias! : 0 });
    }
    return lm;
  }

  clone(): LatencyModel {
    return LatencyModel.fromJSON(this.toJSON(), this.forget, this.priorVar);
  }
}
