// Verification: one full-model forward over the whole draft tree, then acceptance of the longest
// path the target would itself have produced.
//
// Greedy: walk from the root, following the child whose token equals the full model's argmax;
// the argmax at the last accepted node is the bonus token. Because every kernel is batch-invariant,
// this emits exactly the tokens of plain greedy decoding.
//
// Sampling: standard speculative sampling with deterministic proposals (each draft token is a point
// mass q = delta(x)). At a node with target distribution p, try its children in order: accept child
// x with probability p(x); on rejection set p <- normalise(p with p(x) = 0) and try the next; when
// all are rejected, sample the bonus token from what is left. Each step is an exact rejection step,
// so the emitted tokens follow the target distribution (SpecInfer's multi-draft rule with q = delta).
import { targetDistribution, sampleFrom, type SamplingOptions } from './distribution.js';
import type { Rng } from './rng.js';
import type { Sequence } from './sequence.js';
import type { DraftTree } from './tree.js';

export const FULL_MODEL = 'full';

export interface Verdict {
  /** Tree nodes accepted (root first). */
  path: number[];
  /** Tokens appended to the sequence: accepted drafts, then the bonus token. */
  tokens: number[];
}

export interface Sampler extends SamplingOptions {
  rng: Rng;
}

export async function verifyTree(seq: Sequence, tree: DraftTree, sampler?: Sampler): Promise<Verdict> {
  const all = tree.nodes.map((_, i) => i);
  const sampling = sampler !== undefined && sampler.temperature > 0;
  const out = await seq.forwardNodes(tree, all, { wantLogits: sampling }, FULL_MODEL);
  const vocab = sampling ? out.logits!.length / all.length : 0;

  const path = [0];
  const tokens: number[] = [];
  let node = 0;
  for (;;) {
    let next = -1;
    let chosen: number;
    if (!sampling) {
      chosen = out.argmax[node];
      next = tree.childWithToken(node, chosen);
    } else {
      const p = targetDistribution(out.logits!.subarray(node * vocab, (node + 1) * vocab), sampler);
      for (const c of tree.nodes[node].children) {
        const x = tree.nodes[c].token;
        if (sampler.rng.uniform() < p[x]) {
          next = c;
          break;
        }
        // Rejected: remove x from the target and renormalise before the next sibling.
        const rest = 1 - p[x];
        p[x] = 0;
        if (rest <= 0) break;
        for (let i = 0; i < p.length; i++) p[i] /= rest;
      }
      chosen = next >= 0 ? tree.nodes[next].token : sampleFrom(p, sampler.rng.uniform());
    }
    tokens.push(chosen);
    if (next < 0) break;
    path.push(next);
    node = next;
  }
  await seq.accept(path, tokens);
  return { path, tokens };
}
