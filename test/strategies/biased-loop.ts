// A minimal sampling loop with a pluggable verifier, for the positive control of the sampling
// test: the same strategy and the same chi-square test must catch a verifier with a known bug.
// ('exact' reproduces verify.ts's rule; 'no-residual' forgets to remove rejected drafts from the
// target before sampling the bonus token, the classic speculative-sampling bug.)
import { targetDistribution, sampleFrom } from '../../ts/decode/distribution.js';
import { Rng } from '../../ts/decode/rng.js';
import { Sequence } from '../../ts/decode/sequence.js';
import type { Strategy } from '../../ts/decode/strategy.js';
import { DraftTree } from '../../ts/decode/tree.js';
import { FULL_MODEL } from '../../ts/decode/verify.js';
import type { FakeModel } from './fake-model.js';

export type VerifierBug = 'exact' | 'no-residual';

export async function sampleWith(
  model: FakeModel,
  strategy: Strategy,
  prompt: number[],
  o: { maxTokens: number; temperature: number; topP: number; seed: number; bug: VerifierBug },
): Promise<number[]> {
  const ctx = await model.createContext(prompt.length + o.maxTokens + 80);
  try {
    const seq = new Sequence(ctx, model.spec.numLayers);
    const sampler = { temperature: o.temperature, topP: o.topP, rng: new Rng(o.seed) };
    const first = await seq.prefill(prompt, { wantLogits: true });
    const out = [sampleFrom(targetDistribution(first.logits!, sampler), sampler.rng.uniform())];
    seq.tokens.push(out[0]);
    while (out.length < o.maxTokens) {
      const tree = new DraftTree(seq.pending);
      await strategy.draft(seq, tree, { temperature: o.temperature, budget: o.maxTokens - out.length });
      const all = tree.nodes.map((_, i) => i);
      const res = await seq.forwardNodes(tree, all, { wantLogits: true }, FULL_MODEL);
      const V = res.logits!.length / all.length;
      const path = [0];
      const tokens: number[] = [];
      let node = 0;
      for (;;) {
        const p = targetDistribution(res.logits!.subarray(node * V, (node + 1) * V), sampler);
        const orig = p.slice();
        let next = -1;
        for (const c of tree.nodes[node].children) {
          const x = tree.nodes[c].token;
          if (sampler.rng.uniform() < p[x]) {
            next = c;
            break;
          }
          const rest = 1 - p[x];
          p[x] = 0;
          if (rest <= 0) break;
          for (let i = 0; i < p.length; i++) p[i] /= rest;
        }
        const chosen = next >= 0 ? tree.nodes[next].token : sampleFrom(o.bug === 'no-residual' ? orig : p, sampler.rng.uniform());
        tokens.push(chosen);
        if (next < 0) break;
        path.push(next);
        node = next;
      }
      await seq.accept(path, tokens);
      strategy.observe?.(tree, { path, tokens }, seq);
      out.push(...tokens);
    }
    return out.slice(0, o.maxTokens);
  } finally {
    ctx.dispose();
  }
}
