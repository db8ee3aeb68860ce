#!/usr/bin/env node
// Time to first token on the GPU for different prefill chunk sizes, and where one prefill's time
// goes (run by gpu-suite.sh `prefill`).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
const app = process.env.CASSPEC_APP;
const { Model } = await import(join(app, 'dist/index.js'));
const prompts = readFileSync(process.env.CASSPEC_PROMPTS, 'utf8').trim().split('\n').slice(0, 12).map((l) => JSON.parse(l).prompt);
const m = await Model.load(join(process.env.CASSPEC_MODELS, 'pycode-small'), { backend: 'cuda' });
for (const chunk of [64, 256, 2048, 64, 256, 2048]) {
  process.env.CASSPEC_PREFILL_CHUNK = String(chunk);
  const ttft = [];
  for (const p of prompts) ttft.push((await m.complete(p, { maxTokens: 1, strategy: 'plain' })).stats.timeToFirstTokenMs);
  ttft.sort((a, b) => a - b);
  console.log(`prefill chunk ${chunk}: median time to first token ${ttft[6].toFixed(2)} ms over ${prompts.length} prompts`);
}
delete process.env.CASSPEC_PREFILL_CHUNK;

// One long prompt by hand, 256-token chunks: context creation, then each chunk's forward and
// commit as seen from JavaScript, in a fresh context three times and then in a reused one.
const ids = m.tokenizer.encode(prompts.reduce((a, b) => (b.length > a.length ? b : a)));
const view = m['view'];
const ms = (t) => (performance.now() - t).toFixed(2);
async function prefill(ctx, label) {
  const parts = [];
  for (let s = 0; s < ids.length; s += 256) {
    const piece = ids.slice(s, s + 256);
    const n = piece.length, base = ctx.committed;
    const slots = Int32Array.from({ length: n }, (_, i) => base + i);
    const parents = Int32Array.from({ length: n }, (_, i) => (i === 0 ? -1 : base + i - 1));
    let t = performance.now();
    await ctx.forward({ tokens: Int32Array.from(piece), slots, parents, outRows: Int32Array.of(n - 1) });
    const f = ms(t);
    t = performance.now();
    await ctx.commit(slots);
    parts.push(`n=${n} forward ${f} commit ${ms(t)}`);
  }
  console.log(`${label}: ${parts.join('; ')}`);
}
for (let r = 0; r < 3; r++) {
  const t = performance.now();
  const ctx = await view.createContext(ids.length + 336);
  const c = ms(t);
  await prefill(ctx, `fresh context ${r} (${ids.length} tokens; createContext ${c} ms)`);
  const steps = [];
  for (let i = 0; i < 3; i++) {  // the first one-token forward of a context captures its graph
    const pos = ctx.committed;
    const t1 = performance.now();
    await ctx.forward({ tokens: Int32Array.of(ids[i]), slots: Int32Array.of(pos), parents: Int32Array.of(-1) });
    await ctx.commit(Int32Array.of(pos));
    steps.push(ms(t1));
  }
  console.log(`  then one-token forward + commit: ${steps.join(', ')} ms`);
  ctx.dispose();
}
const ctx = await view.createContext(ids.length + 336);
await prefill(ctx, 'first use');
for (let r = 0; r < 2; r++) {
  await ctx.truncate(0);
  await prefill(ctx, `reused context ${r}`);
}
ctx.dispose();
m.dispose();
