// Sampling draws each position's token from (seed, position) alone, so for a given seed every
// strategy must emit exactly plain sampling's tokens (on top of the distribution tests).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model, strategyNames } from '../ts/index.js';
import { modelDir } from './reference/models.js';

describe('sampling is identical to plain sampling for the same seed (pycode-tiny, cpu)', () => {
  let model: Model;
  beforeAll(async () => {
    model = await Model.load(modelDir('pycode-tiny'), { backend: 'cpu' });
  });
  afterAll(() => model?.dispose());

  const prompt = 'class Config:\n    def __init__(self, path):\n        self.path = path\n        self.';
  for (const [temperature, topP] of [
    [1, 1],
    [0.7, 0.9],
  ]) {
    it(`T=${temperature} top-p=${topP}: every strategy, 3 seeds`, async () => {
      for (const seed of [1, 2, 3]) {
        const opts = { maxTokens: 40, temperature, topP, seed, ignoreEos: true };
        const plain = await model.complete(prompt, { ...opts, strategy: 'plain' });
        for (const s of strategyNames()) {
          const r = await model.complete(prompt, { ...opts, strategy: s });
          expect(r.tokens, `${s} seed ${seed}`).toEqual(plain.tokens);
        }
      }
    });
  }
});
