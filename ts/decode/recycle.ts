// Token recycling (Luo et al. 2024, "Turning Trash into Treasure"): every verification pass
// computes the full model's top-k next tokens at every tree node, and most of those predictions
// are thrown away with the rejected branches. Keeping, per token id, the top-k successors the full
// model predicted the last time that token was forwarded gives a free, context-free draft source:
// after token t, propose successors(t). Drafting from it costs a table read.
//
// The table lives for one generation: carrying it across requests measured no faster on the dev
// prompts (the first few steps of a generation fill it), and it would let one request's text
// shape another's drafts.

export const RECYCLE_K = 8;

export class SuccessorTable {
  /** ids[t * k + r]: the r-th successor of token t (-1: none yet). */
  private readonly ids: Int32Array;
  /** The full model's probability of that successor when it was recorded. */
  private readonly probs: Float32Array;

  constructor(
    readonly vocabSize: number,
    readonly k = RECYCLE_K,
  ) {
    this.ids = new Int32Array(vocabSize * k).fill(-1);
    this.probs = new Float32Array(vocabSize * k);
  }

  /** Records the successors of `token` from one output row (best first; only the first k are kept). */
  record(token: number, ids: ArrayLike<number>, probs: ArrayLike<number>, offset: number, width: number): void {
    if (token < 0 || token >= this.vocabSize) return;
    const base = token * this.k;
    const m = Math.min(this.k, width);
    for (let r = 0; r < this.k; r++) {
      this.ids[base + r] = r < m ? ids[offset + r] : -1;
      this.probs[base + r] = r < m ? probs[offset + r] : 0;
    }
  }

  /** Forgets everything (a new generation). */
  clear(): void {
    this.ids.fill(-1);
    this.probs.fill(0);
  }

  /** The r-th recorded successor of token (-1 if none). */
  successor(token: number, r: number): number {
    return r < this.k ? this.ids[token * this.k + r] : -1;
  }

  probability(token: number, r: number): number {
    return this.probs[token * this.k + r];
  }
}
