// Real models on the CPU backend: every strategy's greedy output is token-identical to plain
// decoding (pycode-tiny on a subset of the dev prompts, pycode-small on two), CAS-Spec routes
// towards prompt lookup on repetitive code, and the layer-skip search runs on real weights.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../ts/index.js';
import { strategyNames } from '../ts/decode/registry.js';
import { searchSkipPlans } from '../ts/decode/skip-search.js';
import { evenSkipPlan, skipCount } from '../ts/decode/variants.js';
import { CasSpecStrategy } from '../ts/cascade/dytc.js';
import { LatencyModel } from '../ts/cascade/latency.js';
import { modelDir, repoRoot } from './reference/models.js';

interface BenchPrompt {
  id: string;
  category: string;
  prompt: string;
}

function devPrompts(): BenchPrompt[] {
  const file = process.env.CASSPEC_BENCH ?? join(repoRoot, '..', 'shared', 'bench', 'pycode-dev.jsonl');
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as BenchPrompt);
}

/** A few prompts of each category, cut to their last `chars` characters (keeps CI fast). */
function subset(count: number, chars: number): BenchPrompt[] {
  const all = devPrompts();
  const out: BenchPrompt[] = [];
  for (let i = 0; out.length < count && i < all.length; i += Math.floor(all.length / count)) out.push({ ...all[i], prompt: all[i].prompt.slice(-chars) });
  return out;
}

const native = (m: Model) => (m as unknown as { nativeModel: import('../ts/native.js').NativeModel }).nativeModel;

for (const [name, prompts, tokens] of [
  ['pycode-tiny', subset(6, 1200), 48],
  ['pycode-small', subset(2, 800), 32],
] as const) {
  describe(`greedy output of every strategy equals plain on ${name} (cpu)`, () => {
    let model: Model;
    const plain: number[][] = [];
    beforeAll(async () => {
      model = await Model.load(modelDir(name), { backend: 'cpu' });
      for (const p of prompts) plain.push((await model.complete(p.prompt, { maxTokens: tokens, strategy: 'plain', ignoreEos: true })).tokens);
    });
    afterAll(() => model?.dispose());

    for (const strategy of strategyNames().filter((s) => s !== 'plain')) {
      it(strategy, async () => {
        let steps = 0;
        let appended = 0;
        for (const [i, p] of prompts.entries()) {
          const r = await model.complete(p.prompt, { maxTokens: tokens, strategy, ignoreEos: true });
          expect(r.tokens, `${p.id}`).toEqual(plain[i]);
          steps += r.stats.steps;
          appended += r.stats.meanAccepted * r.stats.steps;
        }
        console.log(`${name} ${strategy}: ${(appended / steps).toFixed(2)} tokens per step`);
      });
    }
  });
}

describe('CAS-Spec on pycode-tiny (cpu)', () => {
  let model: Model;
  beforeAll(async () => {
    model = await Model.load(modelDir('pycode-tiny'), { backend: 'cpu' });
  });
  afterAll(() => model?.dispose());

  it('routes to prompt lookup on repetitive code, less so on fresh code', async () => {
    const repetitive = Array.from({ length: 12 }, (_, i) => `    self.assertEqual(parse_value(row[${i}]), expected[${i}])\n`).join('');
    // Dev prompt 20: plain prompt lookup gets 2 of 82 proposals accepted on it (both models).
    const fresh = devPrompts()[20].prompt.slice(-600);
    // A fixed CPU-like cost model (as measured for pycode-tiny here: a verified node costs about 40%
    // of a one-token pass, a draft pass 50-60% of a full one) and decisions from predicted times
    // only, so the routing depends on acceptance alone, not on the load of a shared machine.
    const cpuLike = () => {
      const lm = new LatencyModel();
      for (const ctx of [0, 256])
        for (const n of [1, 2, 4, 8, 16, 32, 64])
          for (const [fa, fm, nOut] of [[1, 1, n], [0.5, 0.5, 1], [0.25, 0.25, 1]]) {
            const frac = 0.2 + 0.8 * ((fa + fm) / 2);
            lm.observe({ n, nOut, ctx, fa, fm, quant: 0 }, 0.3 * frac + 0.08 * n * frac + 0.1 * nOut + 0.0002 * ctx * n);
          }
      const nm = native(model);
      return new CasSpecStrategy({ numLayers: model.config.numLayers, vocabSize: model.config.vocabSize, model: nm }, { latency: lm, persist: false, reproducible: true });
    };
    const share = async (prompt: string) => {
      const r = await model.complete(prompt, { maxTokens: 48, strategy: cpuLike(), ignoreEos: true });
      const v = (r.stats.details as { variants: Record<string, { accepted: number; drafted: number }> }).variants;
      return {
        pldAcceptedShare: (v.pld?.accepted ?? 0) / r.stats.generatedTokens,
        pldDraftedPerStep: (v.pld?.drafted ?? 0) / r.stats.steps,
        meanAccepted: r.stats.meanAccepted,
      };
    };
    const rep = await share(`def test_rows(self):\n${repetitive}`);
    const fr = await share(fresh);
    console.log('repetitive', rep, 'fresh', fr);
    // Repetitive code: speculation pays, lookup proposes every step (DyTC also routes to ls40, which
    // is accurate on such predictable text). Fresh code: lookup is all but dropped, and so is
    // speculation, which would not pay at these costs.
    expect(rep.meanAccepted).toBeGreaterThan(2);
    expect(rep.pldDraftedPerStep).toBeGreaterThan(1);
    expect(fr.pldAcceptedShare).toBeLessThan(0.1);
    expect(fr.pldDraftedPerStep).toBeLessThan(rep.pldDraftedPerStep / 4);
    expect(fr.meanAccepted).toBeLessThan(1.3);
  });

  it('the layer-skip search runs on real weights, within its budget, and reports its cost', async () => {
    const text = model.encode(devPrompts()[3].prompt.slice(-1500));
    const L = model.config.numLayers;
    const rep = await searchSkipPlans(native(model), text, L, [{ count: skipCount(L, 0.4), init: [evenSkipPlan(L, skipCount(L, 0.4))] }], { window: 64 });
    const r = rep.results[0];
    console.log(`pycode-tiny skip ${skipCount(L, 0.4)}: ${r.initialAgreement.toFixed(3)} -> ${r.agreement.toFixed(3)}, ${rep.passes} passes, ${rep.ms.toFixed(1)} ms`);
    expect(r.agreement).toBeGreaterThanOrEqual(r.initialAgreement);
    expect(rep.passes).toBeGreaterThanOrEqual(3);
  });
});
