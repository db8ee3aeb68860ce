// On-the-fly layer-skip search on the fake model: it finds plans close to the best possible (the
// fake's least important sub-layers), improves on the evenly spread start, respects its budget,
// reports its cost and disposes its scratch context.
import { describe, expect, it } from 'vitest';
import { searchSkipPlans } from '../ts/decode/skip-search.js';
import { evenSkipPlan, planFromIndices, skipCount, skippableSubLayers, skippedIndices } from '../ts/decode/variants.js';
import { FakeModel, fakeGreedy } from './strategies/fake-model.js';
import { fakePrompt } from './strategies/harness.js';

const L = 12;
const model = new FakeModel({ numLayers: L, vocab: 64, sharpness: 2, draftNoise: 2 });
const prompt = fakePrompt(5, 30, 64);
const history = [...prompt, ...fakeGreedy(model, prompt, 90)];

/** Agreement of a plan with the full model over the last W tokens (the search's own measure). */
async function agreement(plan: Uint8Array, W = 64): Promise<number> {
  const r = await searchSkipPlans(model, history, L, [{ count: skippedIndices(plan).length, init: [plan] }], { window: W, randomEvals: 0, refineEvals: 0 });
  return r.results[0].initialAgreement;
}

describe('layer-skip search', () => {
  it('beats the evenly spread plan and gets close to the oracle plan', async () => {
    const counts = [skipCount(L, 0.4), skipCount(L, 0.6)];
    const rep = await searchSkipPlans(
      model,
      history,
      L,
      counts.map((c) => ({ count: c, init: [evenSkipPlan(L, c)] })),
      { window: 64, randomEvals: 6, refineEvals: 8 },
    );
    expect(model.liveContexts).toBe(0);
    for (const [i, c] of counts.entries()) {
      const r = rep.results[i];
      expect(skippedIndices(r.plan)).toHaveLength(c);
      expect(skippedIndices(r.plan).every((j) => j >= 2 && j < 2 * L - 2)).toBe(true);
      expect(r.agreement).toBeGreaterThanOrEqual(r.initialAgreement);
      const eligible = skippableSubLayers(L);
      const oracle = planFromIndices(L, [...eligible].sort((a, b) => model.importance[a] - model.importance[b]).slice(0, c));
      const best = await agreement(oracle);
      console.log(`skip ${c}: even ${r.initialAgreement.toFixed(3)} -> searched ${r.agreement.toFixed(3)} (oracle ${best.toFixed(3)}), ${r.evals} evals`);
      expect(r.agreement).toBeGreaterThanOrEqual(best - 0.1);
      expect(r.evals).toBeLessThanOrEqual(1 + 6 + 1 + 8);
    }
    expect(rep.passes).toBeGreaterThan(2);
    expect(rep.tokens).toBeGreaterThan(64);
  });

  it('stops at its budget (in plain decoding steps)', async () => {
    const rep = await searchSkipPlans(model, history, L, [{ count: 8, init: [evenSkipPlan(L, 8)] }], { window: 64, randomEvals: 20, refineEvals: 20, budgetTokens: 0 });
    expect(rep.passes).toBe(2); // the full-model window pass and the one-token timing pass only
    expect(rep.results[0].agreement).toBe(-1);
  });

  it('enumerates small spaces', async () => {
    const tiny = new FakeModel({ numLayers: 4 });
    const rep = await searchSkipPlans(tiny, history.map((t) => t % 64), 4, [{ count: 3, init: [evenSkipPlan(4, 3)] }], { window: 32 });
    expect(rep.results[0].evals).toBe(4); // C(4, 3) plans
  });
});
