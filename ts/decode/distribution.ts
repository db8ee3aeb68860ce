// Turning logits into the target distribution that sampling (and speculative sampling) preserves:
// softmax(logits / temperature), then nucleus (top-p) truncation, renormalised.

export interface SamplingOptions {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Nucleus sampling mass in (0, 1]; 1 disables it. */
  topP: number;
}

/** Probability vector of the sampling distribution for one row of logits. */
export function targetDistribution(logits: Float32Array, opts: SamplingOptions): Float64Array {
  const n = logits.length;
  const p = new Float64Array(n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < n; i++) {
    p[i] = Math.exp((logits[i] - max) / opts.temperature);
    sum += p[i];
  }
  for (let i = 0; i < n; i++) p[i] /= sum;
  if (opts.topP < 1) {
    // Keep the smallest set of most likely tokens whose mass reaches topP (ties by lower id).
    // Tokens below (1 - topP) / n together weigh less than 1 - topP, so the kept set lies among
    // the others: sort only those.
    const floor = (1 - opts.topP) / n;
    const candidates: number[] = [];
    for (let i = 0; i < n; i++) if (p[i] >= floor) candidates.push(i);
    candidates.sort((a, b) => p[b] - p[a] || a - b);
    let mass = 0;
    let keep = 0;
    while (keep < candidates.length && mass < opts.topP) mass += p[candidates[keep++]];
    const kept = new Uint8Array(n);
    for (let k = 0; k < keep; k++) kept[candidates[k]] = 1;
    for (let i = 0; i < n; i++) p[i] = kept[i] ? p[i] / mass : 0;
  }
  return p;
}

/** Draws an index from a (not necessarily normalised) non-negative weight vector. */
export function sampleFrom(p: Float64Array, u: number): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) total += p[i];
  let r = u * total;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    if (p[i] <= 0) continue;
    last = i;
    r -= p[i];
    if (r < 0) return i;
  }
  return last; // rounding left r >= 0: the last token with mass
}
