// CAS-Spec's DyTC router on the fake model (virtual clock): routing adapts to where prompt lookup
// works, the cascade is data (any variant list), refused variants are dropped, sampling runs are
// reproducible per seed, the latency model predicts step times online.
import { describe, expect, it } from 'vitest';
process.env.CASSPEC_CACHE_DIR = 'off';
import { CasSpecStrategy, type StepTrace } from '../ts/cascade/dytc.js';
import { LatencyModel } from '../ts/cascade/latency.js';
import { createStrategy } from '../ts/decode/registry.js';
import { layerSkipVariant, PROMPT_LOOKUP, quantVariant } from '../ts/decode/variants.js';
import { FakeModel, fakeGreedy } from './strategies/fake-model.js';
import { fakeEnv, fakePrompt, fakeStrategy, runFake } from './strategies/harness.js';
import { CheckedStrategy } from './strategies/checked.js';

type Variants = Record<string, { drafted: number; accepted: number; evaluated: number }>;

function drafted(details: Record<string, unknown> | undefined): Variants {
  return (details?.variants ?? {}) as Variants;
}

function share(v: Variants, key: string, field: 'drafted' | 'accepted'): number {
  let total = 0;
  for (const k in v) total += v[k][field];
  return total > 0 ? (v[key]?.[field] ?? 0) / total : 0;
}

// Draft passes cost about 15-25% of a full pass here, verification width is cheap: a GPU-like
// cost structure where model drafts pay off (on the default fake they cost 60-70% and DyTC rightly
// leaves them unused).
const gpuLike = { cost: { base: 1, perToken: 0.02, perCtx: 0.001, perOut: 0.01, draftScale: 0.3 } };

describe('DyTC routing', () => {
  it('shifts towards prompt lookup where it works, and away where it does not', async () => {
    const model = new FakeModel(gpuLike);
    const repetitive = fakePrompt(11, 40, 64); // n-gram regime: text repeats, lookup is excellent
    const novel = fakePrompt(12, 40, 64, 1); // positional regime: lookup is useless
    const out: Record<string, Variants> = {};
    for (const [name, prompt] of [['repetitive', repetitive], ['novel', novel]] as const) {
      // Fixed (evenly spread) skip plans: routing, not plan tuning, is what differs between the texts
      // (the search has its own tests, and its budget would couple the two runs through the plan cache).
      const s = fakeStrategy('cas-spec', model, { search: false });
      const r = await runFake(model, s, prompt, { maxTokens: 160 });
      expect(r.tokens).toEqual(fakeGreedy(model, prompt, 160));
      out[name] = drafted(r.stats.details);
      console.log(name, 'mean accepted', r.stats.meanAccepted.toFixed(2), JSON.stringify(out[name]));
    }
    // Where lookup works it supplies most accepted tokens; where it does not, the model variants do.
    expect(share(out.repetitive, 'pld', 'accepted')).toBeGreaterThan(0.6);
    expect(share(out.novel, 'pld', 'accepted')).toBeLessThan(0.2);
    expect(share(out.novel, 'pld', 'drafted')).toBeLessThan(share(out.repetitive, 'pld', 'drafted') / 2);
    const modelAccepted = ['ls40', 'ls60', 'q1'].reduce((n, k) => n + (out.novel[k]?.accepted ?? 0), 0);
    expect(modelAccepted).toBeGreaterThan(20);
  });

  it('takes any cascade as data: a new variant needs no router change', async () => {
    const model = new FakeModel({ numLayers: 10, ...gpuLike });
    const variants = [layerSkipVariant(10, 0.25, 'ls25'), quantVariant(1, undefined, 'int8ish'), PROMPT_LOOKUP];
    const s = new CheckedStrategy(new CasSpecStrategy(fakeEnv(model), { variants, clock: model.now, latency: new LatencyModel(), persist: false }));
    const prompt = fakePrompt(13, 30, 64, 1);
    const r = await runFake(model, s, prompt, { maxTokens: 120 });
    expect(r.tokens).toEqual(fakeGreedy(model, prompt, 120));
    const v = drafted(r.stats.details);
    expect(Object.keys(v).sort()).toEqual(expect.arrayContaining(['int8ish']));
    expect(Object.keys(v).every((k) => ['ls25', 'int8ish', 'pld'].includes(k))).toBe(true);
    expect(r.stats.meanAccepted).toBeGreaterThan(1.3);
  });

  it('drops a variant the backend refuses (quant mode) and stays lossless', async () => {
    const model = new FakeModel({ quantModes: [], ...gpuLike });
    const variants = [quantVariant(1), PROMPT_LOOKUP];
    const s = new CasSpecStrategy(fakeEnv(model), { variants, clock: model.now, latency: new LatencyModel(), persist: false });
    const prompt = fakePrompt(14, 30, 64, 1);
    const r = await runFake(model, s, prompt, { maxTokens: 40 });
    expect(r.tokens).toEqual(fakeGreedy(model, prompt, 40));
    expect((r.stats.details as { disabledVariants?: string[] }).disabledVariants).toEqual(['q1']);
  });

  it('sampling with the registry strategy is reproducible per seed', async () => {
    const model = new FakeModel({ vocab: 16, sharpness: 1.5 });
    const prompt = fakePrompt(15, 30, 16);
    const go = (seed: number) => runFake(model, createStrategy('cas-spec', fakeEnv(model)), prompt, { maxTokens: 40, temperature: 1, topP: 0.95, seed });
    const a = await go(1);
    const b = await go(1);
    const c = await go(2);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(c.tokens);
  });

  it('predicts step times: verification within 10% median, grows trees only when it pays', async () => {
    const model = new FakeModel();
    const traces: StepTrace[] = [];
    // Exploration off: with it, DyTC knowingly takes some actions whose point estimate is below plain.
    const s = fakeStrategy('cas-spec', model, { trace: (t) => traces.push(t), acceptance: { exploration: 0 } }) as CasSpecStrategy;
    const prompt = fakePrompt(16, 40, 64);
    await runFake(model, s, prompt, { maxTokens: 120 });
    const lat = (s.stats() as { latency: { verifyMedianAbsPctErr: number; stepMedianAbsPctErr: number } }).latency;
    console.log('latency', JSON.stringify(lat));
    expect(lat.verifyMedianAbsPctErr).toBeLessThanOrEqual(10);
    expect(lat.stepMedianAbsPctErr).toBeLessThanOrEqual(10);
    // Every chosen tree was predicted to beat plain decoding (or was the plain step itself).
    for (const t of traces) expect(t.rate).toBeGreaterThanOrEqual(t.plainRate * 0.999);
    expect(traces.some((t) => t.size > 1)).toBe(true);
  });
});
