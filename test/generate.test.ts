// Plain decoding through the public API: greedy equals transformers' greedy continuation,
// sampling is reproducible per seed, options and prompt length are validated, abort works.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model, CasspecError } from '../ts/index.js';
import { modelDir } from './reference/models.js';

interface Golden {
  cases: { prompt: string; prompt_ids: number[]; greedy_ids: number[]; greedy_text: string }[];
}

for (const name of ['pycode-tiny', 'pycode-small']) {
  describe(`plain decoding on ${name} (cpu)`, () => {
    let model: Model;
    const golden: Golden = JSON.parse(readFileSync(join(modelDir(name), 'golden.json'), 'utf8'));
    beforeAll(async () => {
      model = await Model.load(modelDir(name), { backend: 'cpu' });
    });
    afterAll(() => model?.dispose());

    it('greedy continuation equals transformers for every golden prompt', async () => {
      for (const c of golden.cases) {
        const r = await model.complete(c.prompt, { maxTokens: c.greedy_ids.length, strategy: 'plain', ignoreEos: true });
        expect(r.tokens).toEqual(c.greedy_ids);
        expect(r.text).toBe(c.greedy_text);
        expect(r.stats.generatedTokens).toBe(c.greedy_ids.length);
      }
    });

    it('streams chunks whose text concatenates to the result', async () => {
      const gen = model.generate(golden.cases[0].prompt, { maxTokens: 20, strategy: 'plain', ignoreEos: true });
      let text = '';
      const tokens: number[] = [];
      for await (const c of gen) {
        text += c.text;
        tokens.push(...c.tokens);
      }
      const r = await gen.result;
      expect(text).toBe(r.text);
      expect(tokens).toEqual(r.tokens);
      expect(r.stats.tokensPerSecond).toBeGreaterThan(0);
      expect(r.stats.timeToFirstTokenMs).toBeGreaterThan(0);
    });
  });
}

describe('sampling and validation (pycode-tiny, cpu)', () => {
  let model: Model;
  beforeAll(async () => {
    model = await Model.load(modelDir('pycode-tiny'), { backend: 'cpu', contextLength: 64 });
  });
  afterAll(() => model?.dispose());

  it('same seed, same tokens; different seed, different tokens', async () => {
    const opts = { maxTokens: 30, temperature: 1, topP: 0.95, ignoreEos: true };
    const a = await model.complete('def main(', { ...opts, seed: 1 });
    const b = await model.complete('def main(', { ...opts, seed: 1 });
    const c = await model.complete('def main(', { ...opts, seed: 2 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(c.tokens);
  });

  it('stops at the context end with finishReason "context"', async () => {
    const r = await model.complete('import os\n', { maxTokens: 1000, ignoreEos: true });
    expect(r.finishReason).toBe('context');
    expect(r.stats.promptTokens + r.tokens.length).toBeLessThanOrEqual(64);
  });

  it('rejects a prompt longer than the context with E_CONTEXT_FULL', async () => {
    const long = 'x = 1\n'.repeat(200);
    await expect(model.complete(long)).rejects.toMatchObject({ code: 'E_CONTEXT_FULL' });
  });

  it('rejects invalid options with E_INVALID_ARG', async () => {
    await expect(model.complete('a', { temperature: -1 })).rejects.toBeInstanceOf(CasspecError);
    await expect(model.complete('a', { topP: 0 })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    await expect(model.complete([99999])).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    await expect(model.complete('a', { strategy: 'nope' })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
  });

  it('an aborted signal stops generation with E_ABORTED and the model stays usable', async () => {
    const ac = new AbortController();
    const gen = model.generate('def f(x):', { maxTokens: 40, ignoreEos: true, signal: ac.signal });
    let n = 0;
    await expect(
      (async () => {
        for await (const c of gen) {
          n += c.tokens.length;
          if (n >= 3) ac.abort();
        }
      })(),
    ).rejects.toMatchObject({ code: 'E_ABORTED' });
    const r = await model.complete('def f(x):', { maxTokens: 5, ignoreEos: true });
    expect(r.tokens.length).toBe(5);
  });

  it('dispose is safe twice and later calls fail cleanly', async () => {
    const m = await Model.load(modelDir('pycode-tiny'), { backend: 'cpu' });
    m.dispose();
    m.dispose();
    await expect(m.complete('a')).rejects.toMatchObject({ code: 'E_DISPOSED' });
  });
});
