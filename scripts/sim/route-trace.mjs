#!/usr/bin/env node
// What the DyTC router decides, step by step, on a real backend (run it on the GPU machine):
// tree sizes, expected vs accepted tokens, predicted vs measured step times, the prompt-lookup
// chain lengths it chose against the matches it had, and its latency model's cost curve.
//
//   node scripts/sim/route-trace.mjs --model DIR --backend cuda [--limit 6] [--cascade ls40+ls60+pld+rec]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Model } from '../../dist/index.js';
import { parseCascade } from '../../dist/decode/registry.js';
import { CasSpecStrategy } from '../../dist/cascade/dytc.js';
import { LOOKUP_BUCKETS } from '../../dist/cascade/acceptance.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: new URL('../../../shared/models/pycode-small', import.meta.url).pathname },
    prompts: { type: 'string', default: process.env.CASSPEC_PROMPTS ?? new URL('../../../shared/bench/pycode-dev.jsonl', import.meta.url).pathname },
    backend: { type: 'string', default: 'auto' },
    limit: { type: 'string', default: '6' },
    tokens: { type: 'string', default: '256' },
    cascade: { type: 'string' },
  },
});
const model = await Model.load(a.model, { backend: a.backend });
const env = { numLayers: model.config.numLayers, vocabSize: model.config.vocabSize, model: model['view'] };
const prompts = readFileSync(a.prompts, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)).slice(0, Number(a.limit));
const variants = a.cascade ? parseCascade(a.cascade, env.numLayers) : undefined;

const mean = (xs) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : 0);
const pct = (xs, q) => (xs.length ? [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(q * xs.length))] : 0);
// Warm-up: calibration, JIT.
await model.generate(prompts[0].prompt, { maxTokens: 64, ignoreEos: true, strategy: new CasSpecStrategy(env, { variants }) }).result;

for (const p of prompts) {
  const steps = [];
  const s = new CasSpecStrategy(env, { variants, trace: (t) => steps.push(t) });
  const r = await model.generate(p.prompt, { maxTokens: Number(a.tokens), ignoreEos: true, strategy: s }).result;
  const pldR = await model.generate(p.prompt, { maxTokens: Number(a.tokens), ignoreEos: true, strategy: 'pld' }).result;
  const lookups = steps.flatMap((t) => t.actions.filter((x) => /^pld\d+$/.test(x)).map((x) => Number(x.slice(3))));
  const lat = r.stats.details.latency;
  console.log(
    `${p.id}: cas-spec ${r.stats.tokensPerSecond.toFixed(0)} tok/s acc ${r.stats.meanAccepted.toFixed(2)} | pld ${pldR.stats.tokensPerSecond.toFixed(0)} tok/s acc ${pldR.stats.meanAccepted.toFixed(2)} | ` +
      `tree size mean ${mean(steps.map((t) => t.size)).toFixed(1)} p90 ${pct(steps.map((t) => t.size), 0.9)} | E mean ${mean(steps.map((t) => t.expected)).toFixed(2)} | ` +
      `lookup chains: ${lookups.length} mean len ${mean(lookups).toFixed(1)} | pred verify ${mean(steps.map((t) => t.verifyMs)).toFixed(3)} draft ${mean(steps.map((t) => t.draftMs)).toFixed(3)} ms | ` +
      `err verify ${lat.verifyMedianAbsPctErr}% step ${lat.stepMedianAbsPctErr}% | overhead ${lat.overheadMs} ms | actions ${JSON.stringify(r.stats.details.dytc.actions)}`,
  );
  console.log('  recent steps', JSON.stringify(lat.recentSteps));
  if (p === prompts[prompts.length - 1]) {
    const lm = s.latency;
    const ctx = 700;
    console.log('  latency model, full model, ctx 700: ' + [1, 2, 4, 8, 11, 16, 24, 32, 48, 64].map((n) => `n${n}=${lm.predict({ n, nOut: n, ctx, fa: 1, fm: 1, quant: 0 }).toFixed(3)}`).join(' '));
    console.log('  lookup estimates (optimistic / point): ' + LOOKUP_BUCKETS.map((b) => `${b}=${s.tracker.optimistic('pld', b).toFixed(2)}/${s.tracker.estimate('pld', b).toFixed(2)}`).join(' '));
    console.log('  sources', JSON.stringify(s.tracker.summary()));
  }
}
model.dispose();
