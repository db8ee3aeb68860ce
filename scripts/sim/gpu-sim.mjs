#!/usr/bin/env node
// Router development without a GPU: runs real generations on the CPU backend (so the tokens, the
// draft trees and every acceptance are real), but charges each native call the time it took on
// the GPU (a per-call cost table measured there) instead of its CPU time, and gives the
// strategies a clock that runs on that charged time plus the real TypeScript time. The result is
// an ESTIMATE of GPU tokens/s, for comparing routing ideas between device runs; it is never a
// benchmark result (bench/RESULTS.md holds only device measurements).
//
//   node scripts/sim/gpu-sim.mjs [--model DIR] [--limit N] [--tokens N] [--strategies a,b] [--costs FILE]
//
// Cost table (JSON, ms): { "forward": {"1": 0.616, ...}, "fixed": 0.09, "hop": 0.04, "commit": 0.03 }
// "forward" is the time of a full-model forward of n tokens (interpolated linearly between the
// measured n, extrapolated linearly per token above the largest); a skip plan keeping fraction f of
// the sub-layers costs fixed + (T(n) - fixed) * f; "hop" is added per forward call (the N-API and
// thread hand-over), "commit" per commit. Default: pycode-small on the H200, eighth session of
// 2026-11-30: cas-spec's verification time per step against its mean tree size, medians of the 120
// prompts binned by tree size (bench/raw/gpu-2026-11-30h-h200-final-120.json.gz), less about 0.17
// ms of host time (plain's 0.570 ms per step against the 0.41 ms forward gpu_check times); n = 64,
// which no bin reached, is gpu_check's tree of 64 plus the margin trees showed at 31.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Model } from '../../dist/index.js';
import { createStrategy, parseCascade } from '../../dist/decode/registry.js';
import { CasSpecStrategy } from '../../dist/cascade/dytc.js';
import { LatencyModel } from '../../dist/cascade/latency.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: new URL('../../../shared/models/pycode-small', import.meta.url).pathname },
    prompts: { type: 'string', default: new URL('../../../shared/bench/pycode-dev.jsonl', import.meta.url).pathname },
    limit: { type: 'string', default: '12' },
    skip: { type: 'string', default: '0' },
    tokens: { type: 'string', default: '256' },
    strategies: { type: 'string', default: 'plain,pld,cas-spec' },
    costs: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});

const costs = a.costs
  ? JSON.parse(readFileSync(a.costs, 'utf8'))
  : { forward: { 1: 0.4, 5: 0.445, 9: 0.475, 12: 0.51, 16: 0.525, 24: 0.57, 31: 0.615, 64: 0.74 }, fixed: 0.09, hop: 0.04, commit: 0.03 };
const pts = Object.entries(costs.forward)
  .map(([n, ms]) => [Number(n), ms])
  .sort((x, y) => x[0] - y[0]);
function fullCost(n) {
  for (let i = 1; i < pts.length; i++) {
    const [n0, t0] = pts[i - 1];
    const [n1, t1] = pts[i];
    if (n <= n1) return t0 + ((t1 - t0) * (n - n0)) / (n1 - n0);
  }
  const [nl, tl] = pts[pts.length - 1];
  const [np, tp] = pts[pts.length - 2];
  return tl + ((tl - tp) / (nl - np)) * (n - nl);
}
function forwardCost(req) {
  const n = req.tokens.length;
  let kept = 1;
  if (req.skip) {
    let k = 0;
    for (const s of req.skip) if (!s) k++;
    kept = k / req.skip.length;
  }
  return costs.fixed + (fullCost(n) - costs.fixed) * kept + costs.hop;
}

// The virtual clock: real time, minus the real time spent in native calls, plus their charged cost.
let nativeReal = 0;
let charged = 0;
const vclock = () => performance.now() - nativeReal + charged;

const model = await Model.load(a.model, { backend: 'cpu' });
const view = model['view'];
const probe = await view.createContext(8);
const proto = Object.getPrototypeOf(probe);
probe.dispose();
const origForward = proto.forward;
const origCommit = proto.commit;
proto.forward = async function (req) {
  const t0 = performance.now();
  try {
    return await origForward.call(this, req);
  } finally {
    nativeReal += performance.now() - t0;
    charged += forwardCost(req);
  }
};
proto.commit = async function (path) {
  const t0 = performance.now();
  try {
    return await origCommit.call(this, path);
  } finally {
    nativeReal += performance.now() - t0;
    charged += costs.commit;
  }
};

const env = { numLayers: model.config.numLayers, vocabSize: model.config.vocabSize, model: view };
const lm = new LatencyModel();
function strategy(name) {
  // cas-spec runs on the virtual clock; 'cas-spec:pld+rec' names a cascade (registry.ts); suffixes
  // '/nosearch' (keep the evenly spread skip plans), '/explore=0.1' (the tracker's exploration bonus).
  const [base, ...flags] = name.split('/');
  if (base === 'cas-spec' || base.startsWith('cas-spec:')) {
    const variants = base === 'cas-spec' ? undefined : parseCascade(base.slice(9), env.numLayers);
    const o = { clock: vclock, latency: lm, persist: false, variants };
    for (const f of flags) {
      if (f === 'nosearch') o.search = false;
      else if (f.startsWith('explore=')) o.acceptance = { exploration: Number(f.slice(8)) };
    }
    return new CasSpecStrategy(env, o);
  }
  return createStrategy(name, env);
}

const all = readFileSync(a.prompts, 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l));
const prompts = all.slice(Number(a.skip), Number(a.skip) + Number(a.limit));
const warm = all[all.length - 1]; // not among the measured ones: nothing learned from it is a replay
const names = a.strategies.split(',');
const maxTokens = Number(a.tokens);
// Warm-up (excluded): calibration, plan search, JIT.
for (const name of names) await model.generate(warm.prompt, { maxTokens, ignoreEos: true, strategy: strategy(name) }).result;
const rows = [];
const totals = Object.fromEntries(names.map((n) => [n, { ms: 0, gpuMs: 0, tokens: 0, steps: 0, same: 0 }]));
for (const p of prompts) {
  let ref;
  for (const name of names) {
    const s = strategy(name);
    const t0 = vclock();
    const c0 = charged;
    const r = await model.generate(p.prompt, { maxTokens, ignoreEos: true, strategy: s }).result;
    const ms = vclock() - t0;
    const gpuMs = charged - c0;
    if (name === names[0]) ref = r.tokens;
    const same = ref.length === r.tokens.length && ref.every((t, i) => t === r.tokens[i]);
    const t = totals[name];
    t.ms += ms;
    t.gpuMs += gpuMs;
    t.tokens += r.tokens.length;
    t.steps += r.stats.steps;
    t.same += same ? 1 : 0;
    rows.push({ id: p.id, name, tps: (1000 * r.tokens.length) / ms, acc: r.stats.meanAccepted, same });
    if (a.verbose && name.startsWith('cas-spec')) console.log(JSON.stringify(r.stats.details, null, 1));
    process.stdout.write(`${p.id} ${name} ${((1000 * r.tokens.length) / ms).toFixed(0)} tok/s acc ${r.stats.meanAccepted.toFixed(2)}${same ? '' : ' DIFFERENT'}\n`);
  }
}
const base = totals[names[0]];
console.log('\nestimated GPU tok/s (simulated; not a measurement)');
for (const name of names) {
  const t = totals[name];
  const tps = (1000 * t.tokens) / t.ms;
  console.log(
    `${name.padEnd(12)} ${tps.toFixed(0).padStart(6)} tok/s  ${(tps / ((1000 * base.tokens) / base.ms)).toFixed(2)}x  acc ${(t.tokens / t.steps).toFixed(2)}  identical ${t.same}/${prompts.length}  per step: device ${(t.gpuMs / t.steps).toFixed(3)} ms, host ${((t.ms - t.gpuMs) / t.steps).toFixed(3)} ms`,
  );
}
model.dispose();
