// Greedy losslessness of every strategy on the fake model: the output is token-identical to plain
// greedy decoding (computed straight from the fake's full model), in both regimes (prompt lookup
// useful / useless), with tree invariants checked at every step.
import { describe, expect, it } from 'vitest';
process.env.CASSPEC_CACHE_DIR = 'off';
import { createStrategy, strategyNames } from '../ts/decode/registry.js';
import { FakeModel, fakeGreedy } from './strategies/fake-model.js';
import { fakeEnv, fakePrompt, runFake } from './strategies/harness.js';
import { CheckedStrategy } from './strategies/checked.js';

const model = new FakeModel();
const prompts = [
  { name: 'n-gram regime', prompt: fakePrompt(1, 40, 64) },
  { name: 'n-gram regime, short prompt', prompt: fakePrompt(2, 5, 64) },
  { name: 'positional regime', prompt: fakePrompt(3, 40, 64, 1) },
];

describe('greedy output equals plain greedy on the fake model', () => {
  for (const name of strategyNames()) {
    it(name, async () => {
      for (const { prompt } of prompts) {
        const want = fakeGreedy(model, prompt, 60);
        const s = new CheckedStrategy(createStrategy(name, fakeEnv(model)));
        const r = await runFake(model, s, prompt, { maxTokens: 60 });
        expect(r.tokens).toEqual(want);
        expect(r.stats.generatedTokens).toBe(60);
      }
      expect(model.liveContexts).toBe(0); // scratch contexts were disposed
    });
  }

  it('respects a small budget near maxTokens and a context that ends', async () => {
    for (const name of strategyNames()) {
      const prompt = fakePrompt(9, 30, 64);
      const s = new CheckedStrategy(createStrategy(name, fakeEnv(model)));
      const r = await runFake(model, s, prompt, { maxTokens: 100, capacity: prompt.length + 23 });
      expect(r.finishReason).toBe('context');
      expect(r.tokens).toEqual(fakeGreedy(model, prompt, r.tokens.length));
    }
  });
});
