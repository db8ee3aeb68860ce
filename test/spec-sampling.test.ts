// Lossless sampling: for every strategy, the joint distribution of the first generated tokens under
// temperature / top-p sampling equals the exact target distribution (computed by enumeration from
// the fake model's logits), by a chi-square goodness-of-fit test at alpha = 0.001 over thousands
// of seeded runs through the real generation loop. Seeds are fixed, so the test is deterministic.
// Positive control: the same test, on the same strategies, detects a verifier that samples the
// bonus token from the unadjusted target after a rejection.
import { describe, expect, it } from 'vitest';
process.env.CASSPEC_CACHE_DIR = 'off';
import { strategyNames } from '../ts/decode/registry.js';
import { targetDistribution } from '../ts/decode/distribution.js';
import { FakeModel } from './strategies/fake-model.js';
import { fakeStrategy, runFake } from './strategies/harness.js';
import { CheckedStrategy } from './strategies/checked.js';
import { chiSquare } from './strategies/stats.js';
import { sampleWith, type VerifierBug } from './strategies/biased-loop.js';

const ALPHA = 0.001;
const RUNS = 3000;
const TOKENS = 3;
// Peaked enough that drafts get accepted; draft passes cheap, so cas-spec grows real trees.
const model = new FakeModel({
  vocab: 8,
  numLayers: 8,
  order: 2,
  sharpness: 2,
  draftNoise: 1.5,
  cost: { base: 1, perToken: 0.02, perCtx: 0.001, perOut: 0.01, draftScale: 0.15 },
});
// Repetitive prompt (n-gram regime) so prompt lookup proposes too.
const prompt = [3, 4, 5, 6, 3, 4, 5, 6, 3, 4, 7];

function exact(temperature: number, topP: number): Map<string, number> {
  const V = model.spec.vocab;
  const logits = new Float32Array(V);
  const out = new Map<string, number>();
  const walk = (ctx: number[], prefix: number[], prob: number) => {
    if (prefix.length === TOKENS) {
      if (prob > 0) out.set(prefix.join(','), prob);
      return;
    }
    model.fullLogits(ctx, logits);
    const p = targetDistribution(logits, { temperature, topP });
    for (let v = 0; v < V; v++) if (p[v] > 0) walk([...ctx, v], [...prefix, v], prob * p[v]);
  };
  walk(prompt, [], 1);
  return out;
}

async function histogram(sample: (seed: number) => Promise<number[]>): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < RUNS; i++) {
    const key = (await sample(10_000 + i)).join(',');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

const configs = [
  { temperature: 1, topP: 1 },
  { temperature: 1.5, topP: 0.8 },
];

describe('sampling is lossless for every strategy (chi-square vs the exact distribution)', () => {
  for (const { temperature, topP } of configs) {
    const want = exact(temperature, topP);
    for (const name of strategyNames()) {
      it(`${name} at temperature ${temperature}, top-p ${topP}`, async () => {
        const s = new CheckedStrategy(fakeStrategy(name, model));
        let accepted = 0;
        const counts = await histogram(async (seed) => {
          const r = await runFake(model, s, prompt, { maxTokens: TOKENS, temperature, topP, seed });
          accepted += r.stats.meanAccepted * r.stats.steps - r.stats.steps;
          return r.tokens;
        });
        const drafted = s.nodes - s.steps;
        const t = chiSquare(counts, want, RUNS);
        console.log(`${name} T=${temperature} top-p=${topP}: chi2 ${t.stat.toFixed(1)}, df ${t.df}, p ${t.pValue.toExponential(2)}, drafted ${drafted}, accepted ${accepted}`);
        expect(t.df).toBeGreaterThan(10);
        expect(t.pValue, `chi2 ${t.stat.toFixed(1)} on ${t.df} df`).toBeGreaterThan(ALPHA);
        if (name !== 'plain') {
          // Speculation really happened: drafts were verified and some accepted.
          expect(drafted).toBeGreaterThan(RUNS);
          expect(accepted).toBeGreaterThan(RUNS / 10);
        }
      });
    }
  }
});

describe('positive control: the test detects a biased acceptance rule', () => {
  const want = exact(1, 1);
  for (const name of ['pld', 'static-tree', 'cas-spec']) {
    for (const bug of ['exact', 'no-residual'] as VerifierBug[]) {
      it(`${name} with a ${bug} verifier`, async () => {
        const s = fakeStrategy(name, model);
        const counts = await histogram((seed) => sampleWith(model, s, prompt, { maxTokens: TOKENS, temperature: 1, topP: 1, seed, bug }));
        const t = chiSquare(counts, want, RUNS);
        console.log(`control ${name} ${bug}: chi2 ${t.stat.toFixed(1)}, df ${t.df}, p ${t.pValue.toExponential(2)}`);
        if (bug === 'exact') expect(t.pValue).toBeGreaterThan(ALPHA);
        else expect(t.pValue).toBeLessThan(ALPHA);
      });
    }
  }
});
