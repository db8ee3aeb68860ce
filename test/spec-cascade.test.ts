// Cascade plumbing around the DyTC router: cascades named on the command line, token recycling as a
// free draft source, and variants dropped when their drafts cannot pay (fake model, virtual clock).
import { describe, expect, it } from 'vitest';
process.env.CASSPEC_CACHE_DIR = 'off';
import { CasSpecStrategy } from '../ts/cascade/dytc.js';
import { LatencyModel } from '../ts/cascade/latency.js';
import { createStrategy, isStrategyName, parseCascade } from '../ts/decode/registry.js';
import { SuccessorTable } from '../ts/decode/recycle.js';
import { layerSkipVariant, PROMPT_LOOKUP, TOKEN_RECYCLING } from '../ts/decode/variants.js';
import { FakeModel, fakeGreedy } from './strategies/fake-model.js';
import { fakeEnv, fakePrompt, runFake } from './strategies/harness.js';
import { CheckedStrategy } from './strategies/checked.js';

type Variants = Record<string, { drafted: number; accepted: number; forwards: number }>;

describe('cascade names', () => {
  it('parses variant keys joined by +', () => {
    const v = parseCascade('ls40+q1+q1ls25+pld+rec', 16)!;
    expect(v.map((x) => x.key)).toEqual(['ls40', 'q1', 'q1ls25', 'pld', 'rec']);
    expect(v.map((x) => x.kind)).toEqual(['model', 'model', 'model', 'lookup', 'recycle']);
    const mixed = v[2] as { quant: number; skip?: Uint8Array };
    expect(mixed.quant).toBe(1);
    expect([...mixed.skip!].filter((s) => s).length).toBe(8); // 25% of 32 sub-layers
    for (const bad of ['', 'pld+', 'foo', 'ls', 'q', 'ls400', 'pld+ls40x']) expect(parseCascade(bad, 16)).toBeNull();
    expect(isStrategyName('cas-spec:pld+rec')).toBe(true);
    expect(isStrategyName('cas-spec:nope')).toBe(false);
    expect(isStrategyName('pld')).toBe(true);
  });

  it('refuses an unknown cascade with a typed error', () => {
    const model = new FakeModel();
    expect(() => createStrategy('cas-spec:pld+zz', fakeEnv(model))).toThrow(/unknown strategy 'cas-spec:pld\+zz'/);
    expect(createStrategy('cas-spec:pld+rec', fakeEnv(model)).name).toBe('cas-spec');
  });
});

describe('token recycling', () => {
  it('keeps the last top-k successors per token and forgets them on clear', () => {
    const t = new SuccessorTable(10, 3);
    expect(t.successor(4, 0)).toBe(-1);
    t.record(4, [7, 2, 9, 1], [0.5, 0.3, 0.1, 0.05], 0, 4);
    expect([0, 1, 2].map((r) => t.successor(4, r))).toEqual([7, 2, 9]);
    expect(t.successor(4, 3)).toBe(-1); // beyond k
    expect(t.probability(4, 1)).toBeCloseTo(0.3);
    t.record(4, [8], [0.9], 0, 1); // a shorter row replaces the whole list
    expect([0, 1].map((r) => t.successor(4, r))).toEqual([8, -1]);
    t.record(99, [1], [1], 0, 1); // out-of-range token ids are ignored
    t.clear();
    expect(t.successor(4, 0)).toBe(-1);
  });

  it('drafts from verification outputs and stays lossless', async () => {
    const model = new FakeModel();
    const s = new CheckedStrategy(
      new CasSpecStrategy(fakeEnv(model), { variants: [PROMPT_LOOKUP, TOKEN_RECYCLING], clock: model.now, latency: new LatencyModel(), persist: false }),
    );
    const prompt = fakePrompt(21, 40, 64);
    const r = await runFake(model, s, prompt, { maxTokens: 200 });
    expect(r.tokens).toEqual(fakeGreedy(model, prompt, 200));
    const v = r.stats.details!.variants as Variants;
    expect(v.rec.drafted).toBeGreaterThan(0);
    expect(v.rec.accepted).toBeGreaterThan(0);
  });
});

describe('variants that cannot pay', () => {
  it('drops a layer-skip variant whose pass costs more than a full one, and never drafts with it', async () => {
    // draftScale 2: a pass skipping 40% of sub-layers costs 0.6 * 2 = 1.2 full passes.
    const model = new FakeModel({ cost: { base: 1, perToken: 0.02, perCtx: 0.001, perOut: 0.01, draftScale: 2 } });
    const s = new CasSpecStrategy(fakeEnv(model), {
      variants: [layerSkipVariant(8, 0.4), PROMPT_LOOKUP],
      clock: model.now,
      latency: new LatencyModel(),
      persist: false,
      search: false,
    });
    const prompt = fakePrompt(22, 40, 64, 1);
    const r = await runFake(model, new CheckedStrategy(s), prompt, { maxTokens: 120 });
    expect(r.tokens).toEqual(fakeGreedy(model, prompt, 120));
    const d = r.stats.details as { dytc: { pruned: Record<string, { costRatio: number; atStep: number }> }; variants: Variants };
    expect(d.dytc.pruned.ls40.costRatio).toBeGreaterThanOrEqual(1);
    expect(d.dytc.pruned.ls40.atStep).toBe(0);
    expect(d.variants.ls40?.forwards ?? 0).toBe(0);
  });

  it('does not search skip plans for variants the router does not use', async () => {
    const model = new FakeModel({ cost: { base: 1, perToken: 0.02, perCtx: 0.001, perOut: 0.01, draftScale: 2 } });
    const s = new CasSpecStrategy(fakeEnv(model), { variants: [layerSkipVariant(8, 0.4), PROMPT_LOOKUP], clock: model.now, latency: new LatencyModel(), persist: false });
    const r = await runFake(model, s, fakePrompt(24, 40, 64, 1), { maxTokens: 120 });
    const search = (r.stats.details as { search?: { searches: number; stepsWithoutDemand: number } }).search!;
    expect(search.searches).toBe(0);
    expect(search.stepsWithoutDemand).toBeGreaterThan(50);
  });

  it('keeps a cheap variant the text rewards', async () => {
    const model = new FakeModel({ cost: { base: 1, perToken: 0.02, perCtx: 0.001, perOut: 0.01, draftScale: 0.3 } });
    const s = new CasSpecStrategy(fakeEnv(model), { variants: [layerSkipVariant(8, 0.4), PROMPT_LOOKUP], clock: model.now, latency: new LatencyModel(), persist: false });
    const prompt = fakePrompt(23, 40, 64, 1);
    const r = await runFake(model, s, prompt, { maxTokens: 120 });
    const d = r.stats.details as { dytc: { pruned: Record<string, unknown> }; variants: Variants };
    expect(d.dytc.pruned.ls40).toBeUndefined();
    expect(d.variants.ls40.accepted).toBeGreaterThan(10);
  });
});
