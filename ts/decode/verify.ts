// Verification: one full-model forward over the whole draft tree, then acceptance of the longest
// path the target would itself have produced.
//
// Greedy: walk from the root, following the child whose token equals the full model's argmax;
// the argmax at the last accepted node is the bonus token. Because every kernel is batch-invariant,
// this emits exactly the tokens of plain greedy decoding.
//
// Sampling: the token at each position is drawn from the target distribution p (temperature, top-p)
// by inverse CDF with a uniform number fixed by (seed, position) — exactly the draw plain sampling
// makes there. A draft child is accepted iff it equals that draw. This is speculative sampling with
// deterministic proposals coupled to the target's own randomness: a child x is accepted with
// probability p(x), as min(1, p/q) with q = delta(x) prescribes, and the emitted tokens are those
// of plain sampling for the same seed, so their distribution is the target's by construction.
import { targetDistribution, sampleFrom, type SamplingOptions } from './distribution.js';
import { positionUniform } from './rng.js';
import type { Sequence } from './sequence.js';
import type { DraftTree } from './tree.js';

export const FULL_MODEL = 'full';

export interface Verdict {
  /** Tree nodes accepted (root first). */
  path: number[];
  /** Tokens appended to the sequence: accepted drafts, then the bonus token. */
  tokens: number[];
  /** The full model's top-k next tokens and probabilities at every tree node, when asked for. */
  topk?: { k: number; ids: Int32Array; probs: Float32Array };
}

export interface Sampler extends SamplingOptions {
  seed: number;
}

/** topk > 0: also return the full model's top-k at every node (for drafters that recycle them). */
export async function verifyTree(seq: Sequence, tree: DraftTree, sampler?: Sampler, topk = 0): Promise<Verdict> {
  const all = tree.nodes.map((_, i) => i);
  const sampling = sampler !== undefined && sampler.temperature > 0;
  const out = await seq.forwardNodes(tree, all, topk > 0 ? { wantLogits: sampling, topk } : { wantLogits: sampling }, FULL_MODEL);
  const vocab = sampling ? out.logits!.length / all.length : 0;

  const path = [0];
  const tokens: number[] = [];
  let node = 0;
  for (;;) {
    // Sampling: the successor of this node sits at sequence position committed + depth + 1.
    const chosen = sampling
      ? sampleFrom(
          targetDistribution(out.logits!.subarray(node * vocab, (node + 1) * vocab), sampler),
          positionUniform(sampler.seed, seq.committed + tree.nodes[node].depth + 1),
        )
      : out.argmax[node];
    const next = tree.childWithToken(node, chosen);
    tokens.push(chosen);
    if (next < 0) break;
    path.push(next);
    node = next;
  }
  await seq.accept(path, tokens);
  if (topk > 0 && out.topkIds && out.topkProbs) return { path, tokens, topk: { k: topk, ids: out.topkIds, probs: out.topkProbs } };
  return { path, tokens };
}
