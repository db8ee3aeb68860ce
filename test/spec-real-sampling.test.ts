// Lossless sampling on real weights (pycode-tiny, cpu): the joint distribution of the first three
// generated tokens under cas-spec and pld equals the exact target distribution, enumerated from the
// model's own logits (every prefix with probability >= 0.002 exactly, the rest pooled into one
// cell), by a chi-square goodness-of-fit test at alpha = 0.001 with fixed seeds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../ts/index.js';
import type { NativeModel } from '../ts/native.js';
import { targetDistribution } from '../ts/decode/distribution.js';
import type { Strategy } from '../ts/decode/strategy.js';
import { CasSpecStrategy } from '../ts/cascade/dytc.js';
import { LatencyModel } from '../ts/cascade/latency.js';
import { modelDir } from './reference/models.js';
import { chiSquare } from './strategies/stats.js';

const RUNS = 800;
const MIN_PREFIX = 0.002;
const opts = { temperature: 0.7, topP: 1 };

describe('sampling is lossless on pycode-tiny (cpu)', () => {
  let model: Model;
  let prompt: number[];
  const exact = new Map<string, number>();
  beforeAll(async () => {
    model = await Model.load(modelDir('pycode-tiny'), { backend: 'cpu', contextLength: 256 });
    prompt = model.encode('import os\nimport sys\nimport');
    // Enumerate the support of the first three tokens with the full model (one chain per context).
    const nm = (model as unknown as { nativeModel: NativeModel }).nativeModel;
    const ctx = await nm.createContext(prompt.length + 4);
    try {
      const dist = async (toks: number[]) => {
        await ctx.truncate(0);
        const n = toks.length;
        const out = await ctx.forward({
          tokens: Int32Array.from(toks),
          slots: Int32Array.from({ length: n }, (_, i) => i),
          parents: Int32Array.from({ length: n }, (_, i) => i - 1),
          outRows: Int32Array.of(n - 1),
          wantLogits: true,
        });
        return targetDistribution(out.logits!, opts);
      };
      const walk = async (prefix: number[], prob: number) => {
        if (prefix.length === 3) return void exact.set(prefix.join(','), prob);
        const p = await dist([...prompt, ...prefix]);
        for (let v = 0; v < p.length; v++) if (prob * p[v] >= MIN_PREFIX) await walk([...prefix, v], prob * p[v]);
      };
      await walk([], 1);
      let covered = 0;
      for (const q of exact.values()) covered += q;
      exact.set('other', 1 - covered);
    } finally {
      ctx.dispose();
    }
  }, 300_000);
  afterAll(() => model?.dispose());

  // A GPU-like cost model (verification width nearly free, drafts cheap), so cas-spec grows real
  // trees here; on this CPU it rightly drafts little for 3-token runs.
  const gpuLike = (): Strategy => {
    const lm = new LatencyModel();
    for (const ctxLen of [0, 64])
      for (const n of [1, 2, 4, 8, 16, 32, 64]) {
        lm.observe({ n, nOut: n, ctx: ctxLen, fa: 1, fm: 1, quant: 0 }, 1 + 0.002 * n);
        lm.observe({ n, nOut: 1, ctx: ctxLen, fa: 0.6, fm: 0.6, quant: 0 }, 0.3 + 0.002 * n);
        lm.observe({ n, nOut: 1, ctx: ctxLen, fa: 0.4, fm: 0.4, quant: 0 }, 0.2 + 0.002 * n);
      }
    const nm = (model as unknown as { nativeModel: NativeModel }).nativeModel;
    return new CasSpecStrategy({ numLayers: model.config.numLayers, vocabSize: model.config.vocabSize, model: nm }, { latency: lm, persist: false });
  };

  for (const name of ['cas-spec', 'pld', 'static-tree']) {
    it(name, async () => {
      const strategy = name === 'cas-spec' ? gpuLike() : name;
      const counts = new Map<string, number>();
      let drafted = 0;
      for (let i = 0; i < RUNS; i++) {
        const r = await model.complete(prompt, { maxTokens: 3, ...opts, seed: 7_000 + i, strategy, ignoreEos: true });
        let k = r.tokens.join(',');
        if (!exact.has(k)) k = 'other';
        counts.set(k, (counts.get(k) ?? 0) + 1);
        const v = (r.stats.details as { variants?: Record<string, { drafted: number }> }).variants ?? {};
        let total = 0;
        for (const x of Object.values(v)) total += x.drafted;
        drafted = typeof strategy === 'object' ? total : drafted + total; // a reused object's stats are cumulative
      }
      const t = chiSquare(counts, exact, RUNS);
      console.log(`${name}: ${exact.size} outcomes, chi2 ${t.stat.toFixed(1)} on ${t.df} df, p ${t.pValue.toFixed(3)}, ${drafted} tokens drafted`);
      expect(t.df).toBeGreaterThan(5);
      expect(t.pValue).toBeGreaterThan(0.001);
      expect(drafted).toBeGreaterThan(RUNS / 2); // speculation really happened
    }, 300_000);
  }
});
