#!/usr/bin/env node
// GPU correctness checks through the public native API (run on the GPU machine by gpu-suite.sh):
// CUDA vs CPU backend and vs transformers' golden logits on the real models; batch invariance
// (1 vs chain vs random trees of 8/32/64), layer skip and rollback, bitwise where promised; the
// int8 W8A8 draft forward (quant 1): CUDA vs CPU, batch invariance, with a skip plan, refusal
// without its weights, lossless CAS-Spec with int8 drafts.
// Prints PASS/FAIL lines and a summary; exits 1 on any failure.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const app = process.env.CASSPEC_APP ?? process.cwd();
const models = process.env.CASSPEC_MODELS ?? join(app, '..', 'shared', 'models');
const { Model } = await import(join(app, 'dist/index.js'));
const { native } = await import(join(app, 'dist/native.js'));
const { readLlamaConfig } = await import(join(app, 'dist/loader/config.js'));
const { iterateTensors } = await import(join(app, 'dist/loader/weights.js'));

const results = [];
function check(name, ok, detail = '') {
  results.push({ name, ok });
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? ' — ' + detail : ''}`);
}

async function loadNative(dir, backend, quantWeights = 0) {
  const c = await readLlamaConfig(dir);
  const nm = native().createModel(
    { vocabSize: c.vocabSize, hiddenSize: c.hiddenSize, numLayers: c.numLayers, numHeads: c.numHeads, numKvHeads: c.numKvHeads,
      headDim: c.headDim, intermediateSize: c.intermediateSize, maxPositions: c.maxPositions, ropeTheta: c.ropeTheta,
      rmsNormEps: c.rmsNormEps, tieWordEmbeddings: c.tieWordEmbeddings },
    { backend, weightDType: 'BF16', quantWeights },
  );
  for await (const t of iterateTensors(dir)) {
    if (c.tieWordEmbeddings && t.name === 'lm_head.weight') continue;
    await nm.setTensor(t.name, t.dtype, t.shape, t.data);
  }
  return { nm, config: c };
}

const chain = (base, n) => ({
  slots: Int32Array.from({ length: n }, (_, i) => base + i),
  parents: Int32Array.from({ length: n }, (_, i) => (i === 0 ? -1 : base + i - 1)),
});
function relErr(a, b) {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / den);
}
const sameBytes = (a, b) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

// 1. CUDA vs CPU vs golden on real models.
for (const name of ['pycode-tiny', 'pycode-small']) {
  const dir = join(models, name);
  const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8'));
  const gpu = await loadNative(dir, 'cuda');
  const cpu = await loadNative(dir, 'cpu');
  const V = gpu.config.vocabSize;
  let positions = 0, argmaxSame = 0, worstCpu = 0, worstGolden = 0;
  for (const c of golden.cases) {
    const toks = Int32Array.from([...c.prompt_ids, ...c.greedy_ids]);
    const outs = [];
    for (const m of [gpu.nm, cpu.nm]) {
      const ctx = await m.createContext(toks.length + 8);
      outs.push(await ctx.forward({ tokens: toks, ...chain(0, toks.length), wantLogits: true }));
      ctx.dispose();
    }
    for (let p = 0; p < toks.length; p++) {
      positions++;
      if (outs[0].argmax[p] === outs[1].argmax[p]) argmaxSame++;
      const g = outs[0].logits.subarray(p * V, (p + 1) * V);
      worstCpu = Math.max(worstCpu, relErr(g, outs[1].logits.subarray(p * V, (p + 1) * V)));
      const ids = c.top8_ids[p], ref = c.top8_logits[p];
      worstGolden = Math.max(worstGolden, relErr(ids.map((i) => g[i]), ref));
    }
  }
  check(`${name}: CUDA argmax == CPU argmax at every position`, argmaxSame === positions, `${argmaxSame}/${positions}`);
  check(`${name}: CUDA logits within 1e-2 of CPU`, worstCpu <= 1e-2, `worst rel err ${worstCpu.toExponential(2)}`);
  check(`${name}: CUDA top-8 logits within 1e-2 of transformers`, worstGolden <= 1e-2, `worst rel err ${worstGolden.toExponential(2)}`);

  // 2. Batch invariance on the GPU: singles vs one chain vs random trees, bitwise.
  if (name === 'pycode-small') {
    const nm = gpu.nm;
    const prefix = Int32Array.from(golden.cases[0].prompt_ids);
    let seed = 12345;
    const rand = (n) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    for (const cacheLen of [prefix.length, 300]) {
      const ctx = await nm.createContext(cacheLen + 80);
      const pre = Int32Array.from({ length: cacheLen }, (_, i) => (i < prefix.length ? prefix[i] : rand(V)));
      await ctx.forward({ tokens: pre, ...chain(0, cacheLen), outRows: Int32Array.of(cacheLen - 1) });
      await ctx.commit(chain(0, cacheLen).slots);
      for (const size of [8, 32, 64]) {
        // Random tree: node i's parent is a random earlier node (or the root slot -1 for node 0).
        const tokens = Int32Array.from({ length: size }, () => rand(V));
        const parentIdx = Array.from({ length: size }, (_, i) => (i === 0 ? -1 : rand(i)));
        const slots = Int32Array.from({ length: size }, (_, i) => cacheLen + i);
        const parents = Int32Array.from(parentIdx, (p) => (p < 0 ? -1 : cacheLen + p));
        const tree = await ctx.forward({ tokens, slots, parents, wantLogits: true });
        let same = 0;
        for (let i = 0; i < size; i++) {
          // The path root..i, one token at a time with commits, then roll back.
          const path = [];
          for (let n = i; n >= 0; n = parentIdx[n]) path.unshift(n);
          await ctx.truncate(cacheLen);
          let last;
          for (const n of path) {
            last = await ctx.forward({ tokens: Int32Array.of(tokens[n]), slots: Int32Array.of(ctx.committed), parents: Int32Array.of(-1), wantLogits: true });
            await ctx.commit(Int32Array.of(ctx.committed));
          }
          if (sameBytes(last.logits, tree.logits.subarray(i * V, (i + 1) * V))) same++;
        }
        await ctx.truncate(cacheLen);
        check(`pycode-small cache ${cacheLen}: tree of ${size} == one-at-a-time, bitwise`, same === size, `${same}/${size}`);
      }
      // A chain in one forward vs singles.
      const n = 16;
      const toks = Int32Array.from({ length: n }, () => rand(V));
      const ch = await ctx.forward({ tokens: toks, ...chain(cacheLen, n), wantLogits: true });
      await ctx.truncate(cacheLen);
      let same = 0;
      for (let i = 0; i < n; i++) {
        const o = await ctx.forward({ tokens: toks.subarray(i, i + 1), slots: Int32Array.of(cacheLen + i), parents: Int32Array.of(-1), wantLogits: true });
        await ctx.commit(Int32Array.of(cacheLen + i));
        if (sameBytes(o.logits, ch.logits.subarray(i * V, (i + 1) * V))) same++;
      }
      check(`pycode-small cache ${cacheLen}: chain of ${n} == singles, bitwise`, same === n, `${same}/${n}`);
      // Rollback: truncate and re-forward reproduces bitwise.
      await ctx.truncate(cacheLen);
      const again = await ctx.forward({ tokens: toks, ...chain(cacheLen, n), wantLogits: true });
      check(`pycode-small cache ${cacheLen}: rollback + re-forward bitwise`, sameBytes(again.logits, ch.logits));
      // Layer plan: skipping nothing == full; skipping changes logits; CUDA vs CPU agree under a skip plan.
      await ctx.truncate(cacheLen);
      const none = await ctx.forward({ tokens: toks, ...chain(cacheLen, n), skip: new Uint8Array(2 * gpu.config.numLayers), wantLogits: true });
      check(`pycode-small cache ${cacheLen}: empty skip plan == full model, bitwise`, sameBytes(none.logits, ch.logits));
      ctx.dispose();
    }
    const skip = new Uint8Array(2 * gpu.config.numLayers);
    for (const l of [3, 5, 8, 11]) skip[2 * l] = skip[2 * l + 1] = 1;
    skip[2 * 13] = 1;
    const toks = Int32Array.from(golden.cases[1].prompt_ids);
    const outs = [];
    for (const m of [gpu.nm, cpu.nm]) {
      const ctx = await m.createContext(toks.length + 4);
      outs.push(await ctx.forward({ tokens: toks, ...chain(0, toks.length), skip, wantLogits: true }));
      ctx.dispose();
    }
    const full = await (async () => {
      const ctx = await gpu.nm.createContext(toks.length + 4);
      const o = await ctx.forward({ tokens: toks, ...chain(0, toks.length), wantLogits: true });
      ctx.dispose();
      return o;
    })();
    check('pycode-small: skip plan changes the logits', !sameBytes(outs[0].logits, full.logits));
    const err = relErr(outs[0].logits, outs[1].logits);
    let agree = 0;
    for (let p = 0; p < toks.length; p++) if (outs[0].argmax[p] === outs[1].argmax[p]) agree++;
    check('pycode-small: skip plan CUDA vs CPU logits within 1e-2, argmax identical', err <= 1e-2 && agree === toks.length, `rel err ${err.toExponential(2)}, argmax ${agree}/${toks.length}`);

    // 4. A released context is recycled by the next one that fits (its buffers and graphs kept):
    // same bits as a freshly allocated one, and after a sequence of another length.
    const probe = Int32Array.from(golden.cases[0].prompt_ids);
    const run = async (capacity, warm) => {
      const ctx = await nm.createContext(capacity);
      if (warm) {  // leave other values in its cache and graphs for a 1-token bucket
        await ctx.forward({ tokens: Int32Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % V), ...chain(0, 40) });
        await ctx.commit(chain(0, 40).slots);
        await ctx.forward({ tokens: Int32Array.of(7), ...chain(40, 1) });
        await ctx.truncate(0);
      }
      const out = await ctx.forward({ tokens: probe, ...chain(0, probe.length), wantLogits: true });
      await ctx.commit(chain(0, probe.length).slots);
      const step = await ctx.forward({ tokens: Int32Array.of(out.argmax[probe.length - 1]), ...chain(probe.length, 1), wantLogits: true });
      ctx.dispose();
      return [out.logits, step.logits];
    };
    const fresh = await run(1500, false);  // larger than anything before: a new allocation
    const reused = await run(1000, true);  // fits the one just released
    const again = await run(600, false);
    check('pycode-small: recycled context == fresh context, bitwise', [reused, again].every((r) => sameBytes(r[0], fresh[0]) && sameBytes(r[1], fresh[1])));
  }
  gpu.nm.dispose();
  cpu.nm.dispose();
}

// 3. Public API on CUDA: greedy generation equals the golden continuation.
for (const name of ['pycode-tiny', 'pycode-small']) {
  const dir = join(models, name);
  const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8'));
  const m = await Model.load(dir, { backend: 'cuda' });
  let ok = 0;
  for (const c of golden.cases) {
    const r = await m.complete(c.prompt, { maxTokens: c.greedy_ids.length, strategy: 'plain', ignoreEos: true });
    if (JSON.stringify(r.tokens) === JSON.stringify(c.greedy_ids)) ok++;
  }
  check(`${name}: CUDA greedy generation == transformers greedy`, ok === golden.cases.length, `${ok}/${golden.cases.length}`);
  m.dispose();
}

// 4. int8 W8A8 drafts (quant 1). Tolerance CUDA vs CPU: both quantize the same weights to the same
// int8 codes (built from the source values) and sum exactly in int32; they differ only where an
// activation lands on the other side of a rounding boundary (fp32 operation order, the attention
// output entering as 16-bit hi + lo), each such flip moving one input by 1/127 of its token's
// absmax and the logits by ~1e-3..1e-2. Measured on the H200 (2026-12-01, pycode-small, 178
// positions): with only the first layer run, CUDA and CPU int8 logits match to a median ~1.8e-6 and
// 5 positions flip; with the first and last layer, flips compound and half the positions or more
// carry one (85 with the tensor-core attention, 121 with the fmaf one: the median lands on either
// side of 1e-4 by chance); through all 16 layers the median is 1.3e-2, close to int8's own distance
// from full precision (1.8e-2). pycode-tiny's fp32 weights are stored as bf16 on the GPU, which moves
// every quantizer input by ~4e-3 and flips int8 codes widely, so only its argmax agreement is checked.
// Checks: pycode-small first layer only: median <= 1e-4 and argmax >= 99%; everything argmax >= 90%.
const { CasSpecStrategy } = await import(join(app, 'dist/cascade/dytc.js'));
const { quantVariant, evenSkipPlan, skipCount, PROMPT_LOOKUP } = await import(join(app, 'dist/decode/variants.js'));
for (const name of ['pycode-tiny', 'pycode-small']) {
  const dir = join(models, name);
  const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8'));
  const gpu = await loadNative(dir, 'cuda', 1);
  const cpu = await loadNative(dir, 'cpu', 1);
  const V = gpu.config.vocabSize, L = gpu.config.numLayers;
  const info = gpu.nm.info();
  check(`${name}: int8 copy reported (quantBytes)`, info.quantBytes > 0, `${(info.quantBytes / 2 ** 20).toFixed(1)} MiB int8 + ${(info.weightBytes / 2 ** 20).toFixed(1)} MiB bf16`);
  const plan = evenSkipPlan(L, skipCount(L, 0.4));
  const shallow = new Uint8Array(2 * L).fill(1);
  shallow.fill(0, 0, 2);
  shallow.fill(0, 2 * L - 2);
  const first = new Uint8Array(2 * L).fill(1);
  first.fill(0, 0, 2);
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  for (const [label, skip] of [['', undefined], [' + skip plan ls40', plan], [' first + last layer only', shallow], [' first layer only', first]]) {
    let positions = 0, agree = 0, worst = 0, worstFull = 0;
    const errs = [], errsFull = [];
    for (const c of golden.cases) {
      const toks = Int32Array.from([...c.prompt_ids, ...c.greedy_ids]);
      const outs = [];
      for (const [m, quant] of [[gpu.nm, 1], [cpu.nm, 1], [cpu.nm, 0]]) {
        const ctx = await m.createContext(toks.length + 8);
        outs.push(await ctx.forward({ tokens: toks, ...chain(0, toks.length), skip, quant, wantLogits: true }));
        ctx.dispose();
      }
      for (let p = 0; p < toks.length; p++) {
        positions++;
        if (outs[0].argmax[p] === outs[1].argmax[p]) agree++;
        const g = outs[0].logits.subarray(p * V, (p + 1) * V);
        errs.push(relErr(g, outs[1].logits.subarray(p * V, (p + 1) * V)));
        errsFull.push(relErr(g, outs[2].logits.subarray(p * V, (p + 1) * V)));
        worst = Math.max(worst, errs[errs.length - 1]);
        worstFull = Math.max(worstFull, errsFull[errsFull.length - 1]);
      }
    }
    const med = median(errs), medFull = median(errsFull);
    const sameMath = skip === first && name === 'pycode-small';
    check(
      `${name}: int8${label} CUDA vs CPU int8: ${sameMath ? 'median rel err <= 1e-4, argmax >= 99%' : 'argmax >= 90%'}`,
      sameMath ? med <= 1e-4 && agree >= 0.99 * positions : agree >= 0.9 * positions,
      `argmax ${agree}/${positions} (${((100 * agree) / positions).toFixed(1)}%), rel err median ${med.toExponential(2)} worst ${worst.toExponential(2)} (vs CPU full precision: median ${medFull.toExponential(2)} worst ${worstFull.toExponential(2)})`,
    );
  }

  if (name === 'pycode-small') {
    // Batch invariance of the int8 forward on the GPU: random trees and a chain vs each path fed
    // one token per forward (pending, no commits: int8 KV may not be committed), bitwise.
    const nm = gpu.nm;
    const cacheLen = 200;
    let seed = 777;
    const rand = (n) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    const ctx = await nm.createContext(cacheLen + 80);
    const pre = Int32Array.from({ length: cacheLen }, () => rand(V));
    await ctx.forward({ tokens: pre, ...chain(0, cacheLen), outRows: Int32Array.of(cacheLen - 1) });
    await ctx.commit(chain(0, cacheLen).slots);
    for (const size of [8, 32]) {
      const tokens = Int32Array.from({ length: size }, () => rand(V));
      const parentIdx = Array.from({ length: size }, (_, i) => (i === 0 ? -1 : rand(i)));
      const slots = Int32Array.from({ length: size }, (_, i) => cacheLen + i);
      const parents = Int32Array.from(parentIdx, (p) => (p < 0 ? -1 : cacheLen + p));
      const tree = await ctx.forward({ tokens, slots, parents, quant: 1, wantLogits: true });
      let same = 0;
      for (let i = 0; i < size; i++) {
        const path = [];
        for (let n = i; n >= 0; n = parentIdx[n]) path.unshift(n);
        await ctx.truncate(cacheLen);
        let last;
        for (const [d, n] of path.entries())
          last = await ctx.forward({ tokens: Int32Array.of(tokens[n]), slots: Int32Array.of(cacheLen + d), parents: Int32Array.of(d === 0 ? -1 : cacheLen + d - 1), quant: 1, wantLogits: true });
        if (sameBytes(last.logits, tree.logits.subarray(i * V, (i + 1) * V))) same++;
      }
      await ctx.truncate(cacheLen);
      check(`pycode-small int8: tree of ${size} == one-at-a-time, bitwise`, same === size, `${same}/${size}`);
    }
    const n = 16;
    const toks = Int32Array.from({ length: n }, () => rand(V));
    const ch = await ctx.forward({ tokens: toks, ...chain(cacheLen, n), quant: 1, wantLogits: true });
    const again = await ctx.forward({ tokens: toks, ...chain(cacheLen, n), quant: 1, wantLogits: true });
    const withPlan = await ctx.forward({ tokens: toks, ...chain(cacheLen, n), quant: 1, skip: plan, wantLogits: true });
    const full = await ctx.forward({ tokens: toks, ...chain(cacheLen, n), wantLogits: true });
    await ctx.truncate(cacheLen);
    let same = 0;
    for (let i = 0; i < n; i++) {
      const o = await ctx.forward({ tokens: toks.subarray(i, i + 1), slots: Int32Array.of(cacheLen + i), parents: Int32Array.of(i === 0 ? -1 : cacheLen + i - 1), quant: 1, wantLogits: true });
      if (sameBytes(o.logits, ch.logits.subarray(i * V, (i + 1) * V))) same++;
    }
    check(`pycode-small int8: chain of ${n} == singles, bitwise; repeat bitwise`, same === n && sameBytes(again.logits, ch.logits), `${same}/${n}`);
    check('pycode-small int8: differs from full precision; a skip plan changes it', !sameBytes(ch.logits, full.logits) && !sameBytes(withPlan.logits, ch.logits));
    ctx.dispose();
  }
  gpu.nm.dispose();
  cpu.nm.dispose();
}
{
  // Refusal without the weight copy: E_INVALID_ARG, so the cascade drops the variant.
  const { nm } = await loadNative(join(models, 'pycode-tiny'), 'cuda', 0);
  const ctx = await nm.createContext(8);
  let code = 'none';
  try {
    await ctx.forward({ tokens: Int32Array.of(1, 2), ...chain(0, 2), quant: 1 });
  } catch (e) {
    code = e.code;
  }
  check('quant 1 without draftQuant: E_INVALID_ARG', code === 'E_INVALID_ARG', code);
  ctx.dispose();
  nm.dispose();
}
// Lossless with int8 drafts: CAS-Spec with [q1, pld] and [q1+ls40, pld] == plain, on the GPU.
for (const name of ['pycode-tiny', 'pycode-small']) {
  const dir = join(models, name);
  const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8'));
  const m = await Model.load(dir, { backend: 'cuda', draftQuant: 'int8' });
  const L = m.config.numLayers;
  for (const [label, variants] of [
    ['q1 + pld', () => [quantVariant(1), PROMPT_LOOKUP]],
    ['q1+ls40 + pld', () => [quantVariant(1, evenSkipPlan(L, skipCount(L, 0.4)), 'q1+ls40'), PROMPT_LOOKUP]],
  ]) {
    let ok = 0, drafted = 0, accepted = 0;
    for (const c of golden.cases) {
      const plainTokens = (await m.complete(c.prompt, { maxTokens: 48, strategy: 'plain', ignoreEos: true })).tokens;
      const s = new CasSpecStrategy({ numLayers: L, vocabSize: m.config.vocabSize, model: m.nativeModel }, { variants: variants(), persist: false });
      const r = await m.complete(c.prompt, { maxTokens: 48, strategy: s, ignoreEos: true });
      if (JSON.stringify(r.tokens) === JSON.stringify(plainTokens)) ok++;
      const v = r.stats.details.variants[variants()[0].key];
      drafted += v?.drafted ?? 0;
      accepted += v?.accepted ?? 0;
    }
    check(`${name}: cas-spec [${label}] == plain`, ok === golden.cases.length, `${ok}/${golden.cases.length}; ${variants()[0].key} drafted ${drafted}, accepted ${accepted}`);
  }
  m.dispose();
}

const failed = results.filter((r) => !r.ok).length;
console.log(`\nGPU checks: ${results.length - failed}/${results.length} passed`);
process.exitCode = failed ? 1 : 0;
