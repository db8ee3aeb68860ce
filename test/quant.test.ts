// Quant mode 1 (int8 W8A8 draft forward) on the CPU backend: the native math equals an independent
// re-implementation (test/reference with quantized projections) far more closely than it equals
// full precision; on pycode-tiny it tracks the full model (argmax, logits); it is deterministic and
// batch invariant; the load option and the error cases; and CAS-Spec with q1 drafts (alone and
// mixed with layer skipping) stays token-identical to plain decoding.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from './fixtures/tiny-model.js';
import { Model } from '../ts/index.js';
import { native, type NativeConfig, type NativeContext, type NativeModel } from '../ts/native.js';
import { CasSpecStrategy } from '../ts/cascade/dytc.js';
import { LatencyModel } from '../ts/cascade/latency.js';
import { createDummyNativeModel, formatKernelReport, runKernelBench } from '../ts/bench/kernels.js';
import { readLlamaConfig } from '../ts/loader/config.js';
import { evenSkipPlan, PROMPT_LOOKUP, quantVariant, skipCount, type DraftVariant } from '../ts/decode/variants.js';
import { linear, refForward, type RefConfig, type RefWeights } from './reference/llama-ref.js';
import { modelDir, repoRoot } from './reference/models.js';
import { rejection } from './fixtures/expect-error.js';

// ---- the quantization math of native/cpu/quant.h, in fp32 (Math.fround at every rounding) ----

const f = Math.fround;
/** Round half to even (what nearbyint does under the default rounding mode). */
function rne(v: number): number {
  const r = Math.round(v); // halves go up
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
function quantizeRow(x: ArrayLike<number>): { q: Int8Array; scale: number } {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(f(x[i])));
  const scale = f(m / 127);
  const q = new Int8Array(x.length);
  for (let i = 0; i < x.length; i++) q[i] = scale > 0 ? Math.min(127, Math.max(-127, rne(f(f(x[i]) / scale)))) : 0;
  return { q, scale };
}
function quantizedProjection(): (name: string, W: Float64Array, x: Float64Array, rows: number) => Float64Array {
  const cache = new Map<string, { q: Int8Array; scale: number }[]>();
  return (name, W, x, rows) => {
    const K = x.length;
    let wq = cache.get(name);
    if (!wq) cache.set(name, (wq = Array.from({ length: rows }, (_, r) => quantizeRow(W.subarray(r * K, (r + 1) * K)))));
    const xq = quantizeRow(x);
    const y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let acc = 0; // exact: |acc| < 2^53
      for (let k = 0; k < K; k++) acc += wq[r].q[k] * xq.q[k];
      y[r] = f(f(acc) * f(xq.scale * wq[r].scale));
    }
    return y;
  };
}

// ---- helpers ----

const nativeOf = (m: Model) => (m as unknown as { nativeModel: NativeModel }).nativeModel;
const iota = (n: number, from = 0) => Int32Array.from({ length: n }, (_, i) => from + i);
function chainReq(tokens: number[], from: number, quant: number) {
  return { tokens: Int32Array.from(tokens), slots: iota(tokens.length, from), parents: iota(tokens.length, from - 1).map((p, i) => (i === 0 ? -1 : p)), wantLogits: true, quant };
}
function sameBits(a: Float32Array, b: Float32Array): boolean {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ua.length === ub.length && ua.every((v, i) => v === ub[i]);
}
/** Largest |a - b| over a row, relative to the row's largest |b|. */
function rowRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / scale;
}
// ---------------------------------------------------------------------------------------------

describe('int8 W8A8 forward (quant 1), tiny random model (cpu)', () => {
  const cfg: NativeConfig & RefConfig = {
    vocabSize: 80, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 100,
    maxPositions: 64, ropeTheta: 10000, rmsNormEps: 1e-5, tieWordEmbeddings: false,
  };
  let model: NativeModel;
  const ref: RefWeights = new Map();
  beforeAll(async () => {
    model = native().createModel(cfg, { backend: 'cpu', threads: 2, quantWeights: 1 });
    const rnd = seededRandom(3);
    for (const s of model.tensorSpecs()) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      const norm = s.name.endsWith('norm.weight');
      const scale = (s.name === 'model.embed_tokens.weight' ? 3 : 1.2) / Math.sqrt(s.shape[s.shape.length - 1]);
      const w = Float32Array.from({ length: n }, () => (norm ? 1 + 0.4 * (rnd() - 0.5) : scale * 2 * (rnd() - 0.5)));
      await model.setTensor(s.name, 'F32', s.shape, new Uint8Array(w.buffer));
      ref.set(s.name, Float64Array.from(w));
    }
  });
  afterAll(() => model?.dispose());

  it('equals the re-implemented quantized reference far more closely than full precision', async () => {
    const tokens = Array.from({ length: 20 }, (_, i) => (i * 37 + 11) % cfg.vocabSize);
    const ctx = await model.createContext(32);
    const out = await ctx.forward(chainReq(tokens, 0, 1));
    const wantQ = refForward(cfg, ref, tokens, undefined, quantizedProjection());
    const wantF = refForward(cfg, ref, tokens);
    let toQ = 0, toF = 0;
    for (let t = 0; t < tokens.length; t++) {
      const got = out.logits!.subarray(t * cfg.vocabSize, (t + 1) * cfg.vocabSize);
      toQ = Math.max(toQ, rowRelErr(got, wantQ[t]));
      toF = Math.max(toF, rowRelErr(got, wantF[t]));
    }
    console.log(`tiny q8: max rel. error vs quantized reference ${toQ.toExponential(2)}, vs full precision ${toF.toExponential(2)}`);
    // The reference runs the non-quantized parts in float64, so an activation code can land on the
    // other side of a rounding boundary now and then: 1e-5 of the row's largest logit allows a few,
    // while quantization itself moves logits by percents.
    expect(toQ).toBeLessThan(1e-5);
    expect(toF).toBeGreaterThan(10 * toQ);
    // The reference's projection is the plain product when nothing is quantized.
    expect(linear(Float64Array.of(1, 2, 3, 4), Float64Array.of(1, 1), 2)).toEqual(Float64Array.of(3, 7));
    ctx.dispose();
  });

  it('reports the int8 copy and refuses quant modes it cannot run', async () => {
    const info = model.info();
    // 7 projections per layer: 1 byte per weight + 4 per row scale.
    const C = cfg, Q = C.numHeads * C.headDim, KV = C.numKvHeads * C.headDim, H = C.hiddenSize, F = C.intermediateSize;
    const perLayer = (Q + 2 * KV) * H + H * Q + 2 * F * H + H * F + 4 * (Q + 2 * KV + H + 2 * F + H);
    expect(info.quantBytes).toBe(C.numLayers * perLayer);
    const ctx = await model.createContext(8);
    for (const quant of [2, -1]) expect((await rejection(ctx.forward(chainReq([1, 2], 0, quant)))).code).toBe('E_INVALID_ARG');
    const plain = native().createModel(cfg, { backend: 'cpu', threads: 1 });
    await plain.fillDummy(1);
    expect(plain.info().quantBytes).toBe(0);
    const pctx = await plain.createContext(8);
    const e = await rejection(pctx.forward(chainReq([1, 2], 0, 1)));
    expect(e.code).toBe('E_INVALID_ARG');
    expect(e.message).toMatch(/quantized weights/);
    expect((await pctx.forward(chainReq([1, 2], 0, 0))).argmax.length).toBe(2); // the refusal changed nothing
    pctx.dispose();
    plain.dispose();
    expect(() => native().createModel(cfg, { backend: 'cpu', quantWeights: 2 })).toThrow(/quantWeights/);
    // int8 sums are exact int32 only up to K = 2^31 / 127^2 = 133144 inputs per projection.
    const wide = { ...cfg, intermediateSize: 133145 };
    expect(() => native().createModel(wide, { backend: 'cpu', quantWeights: 1 })).toThrow(/133144/);
    native().createModel(wide, { backend: 'cpu' }).dispose(); // fine without the int8 copy
    ctx.dispose();
  });
});

describe('int8 W8A8 forward on pycode-tiny (cpu)', () => {
  let model: Model;
  let tokens: number[];
  beforeAll(async () => {
    model = await Model.load(modelDir('pycode-tiny'), { backend: 'cpu', draftQuant: 'int8' });
    tokens = model.encode(devPrompts()[5].prompt.slice(-700)).slice(-96);
  });
  afterAll(() => model?.dispose());

  it('tracks the full model: argmax agreement and logits error', async () => {
    const ctx = await nativeOf(model).createContext(128);
    const full = await ctx.forward(chainReq(tokens, 0, 0));
    const q8 = await ctx.forward(chainReq(tokens, 0, 1));
    const V = model.config.vocabSize;
    let agree = 0, worst = 0, sum = 0;
    for (let t = 0; t < tokens.length; t++) {
      if (full.argmax[t] === q8.argmax[t]) agree++;
      const e = rowRelErr(q8.logits!.subarray(t * V, (t + 1) * V), full.logits!.subarray(t * V, (t + 1) * V));
      worst = Math.max(worst, e);
      sum += e;
    }
    console.log(`pycode-tiny q8 vs full: argmax agreement ${((100 * agree) / tokens.length).toFixed(1)}%, rel. logits error mean ${(sum / tokens.length).toExponential(2)} max ${worst.toExponential(2)}`);
    expect(agree / tokens.length).toBeGreaterThanOrEqual(0.9);
    expect(sum / tokens.length).toBeLessThan(0.05);
    ctx.dispose();
  });

  it('is deterministic and batch invariant: chain, one at a time and inside a tree give the same bits', async () => {
    const V = model.config.vocabSize;
    const prefix = tokens.slice(0, 64), pend = tokens.slice(64, 72);
    const ctx = await nativeOf(model).createContext(128);
    await ctx.forward({ ...chainReq(prefix, 0, 0), wantLogits: false });
    await ctx.commit(iota(prefix.length));
    const base = prefix.length;
    const chain = await ctx.forward(chainReq(pend, base, 1));
    const again = await ctx.forward(chainReq(pend, base, 1));
    expect(sameBits(chain.logits!, again.logits!)).toBe(true);
    // One token per forward, each a child of the previous pending one.
    for (let i = 0; i < pend.length; i++) {
      const r = await ctx.forward({ tokens: Int32Array.of(pend[i]), slots: Int32Array.of(base + i), parents: Int32Array.of(i === 0 ? -1 : base + i - 1), wantLogits: true, quant: 1 });
      expect(sameBits(r.logits!, chain.logits!.subarray(i * V, (i + 1) * V)), `single ${i}`).toBe(true);
    }
    await ctx.truncate(base);
    // A tree: the chain plus a sibling branch under every node, interleaved in the batch.
    const treeTokens: number[] = [], slots: number[] = [], parents: number[] = [], chainRow: number[] = [];
    let slot = base;
    for (let i = 0; i < pend.length; i++) {
      const parent = i === 0 ? -1 : slots[chainRow[i - 1]];
      chainRow.push(treeTokens.length);
      treeTokens.push(pend[i]), slots.push(slot++), parents.push(parent);
      treeTokens.push((pend[i] + 7) % V), slots.push(slot++), parents.push(parent);
    }
    const tree = await ctx.forward({ tokens: Int32Array.from(treeTokens), slots: Int32Array.from(slots), parents: Int32Array.from(parents), wantLogits: true, quant: 1 });
    for (let i = 0; i < pend.length; i++)
      expect(sameBits(tree.logits!.subarray(chainRow[i] * V, (chainRow[i] + 1) * V), chain.logits!.subarray(i * V, (i + 1) * V)), `tree row ${i}`).toBe(true);
    ctx.dispose();
  });
});

describe('CAS-Spec with int8 drafts equals plain decoding (pycode-tiny, cpu)', () => {
  let model: Model;
  const prompts = [2, 9, 17].map((i) => devPrompts()[i].prompt.slice(-600));
  const plain: number[][] = [];
  beforeAll(async () => {
    model = await Model.load(modelDir('pycode-tiny'), { backend: 'cpu', draftQuant: 'int8' });
    for (const p of prompts) plain.push((await model.complete(p, { maxTokens: 32, strategy: 'plain', ignoreEos: true })).tokens);
  });
  afterAll(() => model?.dispose());

  // A fixed cost model in which an int8 pass costs half a full one, so the router drafts with it.
  const strategy = (variants: DraftVariant[]) => {
    const lm = new LatencyModel();
    for (const quant of [0, 1])
      for (const ctx of [0, 256])
        for (const n of [1, 2, 4, 8, 16, 32, 64])
          for (const [fa, fm, nOut] of [[1, 1, n], [0.6, 0.6, 1], [1, 1, 1]]) {
            const frac = (0.2 + 0.8 * ((fa + fm) / 2)) * (quant ? 0.5 : 1);
            lm.observe({ n, nOut, ctx, fa, fm, quant }, 0.3 * frac + 0.08 * n * frac + 0.1 * nOut + 0.0002 * ctx * n);
          }
    const nm = nativeOf(model);
    return new CasSpecStrategy({ numLayers: model.config.numLayers, vocabSize: model.config.vocabSize, model: nm }, { variants, latency: lm, persist: false, reproducible: true });
  };

  for (const [label, variants] of [
    ['q1 + pld', () => [quantVariant(1), PROMPT_LOOKUP]],
    ['q1+ls40 + pld', () => [quantVariant(1, evenSkipPlan(4, skipCount(4, 0.4)), 'q1+ls40'), PROMPT_LOOKUP]],
  ] as const) {
    it(label, async () => {
      let drafted = 0;
      for (const [i, p] of prompts.entries()) {
        const r = await model.complete(p, { maxTokens: 32, strategy: strategy(variants()), ignoreEos: true });
        expect(r.tokens, `prompt ${i}`).toEqual(plain[i]);
        const v = (r.stats.details as { variants: Record<string, { drafted: number }> }).variants;
        drafted += v[variants()[0].key]?.drafted ?? 0;
      }
      expect(drafted).toBeGreaterThan(0); // the int8 variant really drafted
    });
  }

  it('without the load option the q1 variant is dropped, and decoding is unchanged', async () => {
    const m = await Model.load(modelDir('pycode-tiny'), { backend: 'cpu' });
    try {
      expect(m.info.quantBytes).toBe(0);
      const r = await m.complete(prompts[0], { maxTokens: 16, strategy: 'cas-spec', ignoreEos: true });
      expect(r.tokens).toEqual(plain[0].slice(0, 16));
    } finally {
      m.dispose();
    }
    await expect(Model.load(modelDir('pycode-tiny'), { backend: 'cpu', draftQuant: 'fp8' as never })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
  });
});

describe('bench --kernels --quant 1 (cpu)', () => {
  it('times each forward in both modes and reports the ratio', async () => {
    const config = await readLlamaConfig(modelDir('pycode-tiny'));
    const { nm } = await createDummyNativeModel(config, { backend: 'cpu', threads: 1, quantWeights: 1 });
    try {
      expect(nm.info().quantBytes).toBeGreaterThan(0);
      const res = await runKernelBench(nm, config, { ns: [1, 4], caches: [16], warmup: 0, repeats: 1, decodeTokens: 2, quant: 1 });
      expect(res.forward.every((r) => r.quantMs! > 0)).toBe(true);
      expect(formatKernelReport(res, 't')).toMatch(/quant 1 ms +q1\/full/);
    } finally {
      nm.dispose();
    }
  });
});

function devPrompts(): { prompt: string }[] {
  const file = process.env.CASSPEC_BENCH ?? join(repoRoot, '..', 'shared', 'bench', 'pycode-dev.jsonl');
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { prompt: string });
}
