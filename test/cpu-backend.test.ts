// The CPU reference backend on tiny random models: agreement with a float64 reference (with and
// without layer skipping), bitwise batch invariance (trees, chains, threads, SIMD paths),
// rollback, KV compaction on commit, output rows, and engine validation errors.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { seededRandom } from './fixtures/tiny-model.js';
import type { ForwardOutput, ForwardRequest, NativeAddon, NativeConfig, NativeContext, NativeModel } from '../ts/native.js';
import { type RefConfig, type RefWeights, refForward } from './reference/llama-ref.js';
import { repoRoot } from './reference/models.js';
import { rejection } from './fixtures/expect-error.js';

// The one place this file finds the native addon ($CASSPEC_NATIVE, else the cmake-js builds).
function addonPath(): string {
  const require = createRequire(import.meta.url);
  const candidates = [process.env.CASSPEC_NATIVE, 'build/Release/casspec.node', 'build/cpu/Release/casspec.node'];
  for (const c of candidates) {
    if (!c) continue;
    const p = join(repoRoot, c);
    try {
      require(p);
      return p;
    } catch {
      /* try the next one */
    }
  }
  throw new Error('casspec native addon not built (npx cmake-js compile)');
}
function loadAddon(): NativeAddon {
  return createRequire(import.meta.url)(addonPath()) as NativeAddon;
}

// ---------------------------------------------------------------------------------------------
// Tiny models with seeded random weights.


type TinyConfig = NativeConfig & RefConfig;

// A: GQA 4/2, widths that are multiples of 8, separate lm_head. B: odd widths (head_dim 12,
// ffn 50, vocab 61) so the SIMD tails run, tied embeddings, one kv head, a small rope theta.
const configA: TinyConfig = {
  vocabSize: 64, hiddenSize: 32, numLayers: 3, numHeads: 4, numKvHeads: 2, headDim: 8, intermediateSize: 48,
  maxPositions: 128, ropeTheta: 10000, rmsNormEps: 1e-5, tieWordEmbeddings: false,
};
const configB: TinyConfig = {
  vocabSize: 61, hiddenSize: 36, numLayers: 2, numHeads: 3, numKvHeads: 1, headDim: 12, intermediateSize: 50,
  maxPositions: 128, ropeTheta: 500, rmsNormEps: 1e-6, tieWordEmbeddings: true,
};

interface Tiny {
  cfg: TinyConfig;
  model: NativeModel;
  ref: RefWeights;
  f32: Map<string, Float32Array>;
}

const isNorm = (name: string) => name.endsWith('norm.weight');

/** Weights large enough that attention is far from uniform and every layer matters. */
function randomWeights(model: NativeModel, seed: number): Map<string, Float32Array> {
  const rnd = seededRandom(seed);
  const out = new Map<string, Float32Array>();
  for (const s of model.tensorSpecs()) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    const scale = isNorm(s.name) ? 0 : 1.2 / Math.sqrt(s.shape[s.shape.length - 1]);
    for (let i = 0; i < n; i++) a[i] = isNorm(s.name) ? 1 + 0.4 * (rnd() - 0.5) : scale * 2 * (rnd() - 0.5);
    // Embeddings larger, like trained ones, so logits spread out.
    if (s.name === 'model.embed_tokens.weight') for (let i = 0; i < n; i++) a[i] *= 3;
    out.set(s.name, a);
  }
  return out;
}

const bytes = (a: Float32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

async function makeTiny(cfg: TinyConfig, seed: number, threads = 2, weights?: Map<string, Float32Array>): Promise<Tiny> {
  const model = loadAddon().createModel(cfg, { backend: 'cpu', threads });
  const f32 = weights ?? randomWeights(model, seed);
  const ref: RefWeights = new Map();
  for (const s of model.tensorSpecs()) {
    const w = f32.get(s.name)!;
    await model.setTensor(s.name, 'F32', s.shape, bytes(w));
    ref.set(s.name, Float64Array.from(w));
  }
  if (cfg.tieWordEmbeddings) expect(f32.has('lm_head.weight')).toBe(false);
  return { cfg, model, ref, f32 };
}

// ---------------------------------------------------------------------------------------------
// Forward helpers.

const iota = (n: number, from = 0) => Int32Array.from({ length: n }, (_, i) => from + i);

/** Forwards tokens as a chain starting at slot `from` (first token a root), all rows, logits. */
function chain(ctx: NativeContext, tokens: number[], from: number, extra: Partial<ForwardRequest> = {}): Promise<ForwardOutput> {
  return ctx.forward({
    tokens: Int32Array.from(tokens),
    slots: iota(tokens.length, from),
    parents: iota(tokens.length, from - 1).map((p, i) => (i === 0 ? -1 : p)),
    wantLogits: true,
    ...extra,
  });
}

/** Feeds tokens one at a time, committing each; returns each step's logits. */
async function singles(ctx: NativeContext, tokens: number[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const t of tokens) {
    const s = ctx.committed;
    const r = await ctx.forward({ tokens: Int32Array.of(t), slots: Int32Array.of(s), parents: Int32Array.of(-1), wantLogits: true });
    await ctx.commit(Int32Array.of(s));
    out.push(r.logits!);
  }
  return out;
}

const row = (logits: Float32Array, i: number, vocab: number) => logits.subarray(i * vocab, (i + 1) * vocab);

function expectSameBits(a: Float32Array, b: Float32Array, what: string) {
  expect(a.length, what).toBe(b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) throw new Error(`${what}: element ${i} differs: ${a[i]} vs ${b[i]}`);
}

function expectClose(got: Float32Array, want: Float64Array, what: string, tol = 1e-4) {
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= tol * Math.max(Math.abs(want[i]), 1e-2 * scale, 1e-3)))
      throw new Error(`${what}: element ${i} is ${got[i]}, reference ${want[i]}`);
  }
}

const randomTokens = (rnd: () => number, n: number, vocab: number) => Array.from({ length: n }, () => Math.floor(rnd() * vocab));

function skipPlan(layers: number, skipped: [number, 'attn' | 'mlp'][]): Uint8Array {
  const s = new Uint8Array(2 * layers);
  for (const [l, part] of skipped) s[2 * l + (part === 'mlp' ? 1 : 0)] = 1;
  return s;
}

// ---------------------------------------------------------------------------------------------

describe.each([
  ['A (untied, GQA 4/2)', configA],
  ['B (tied, odd widths)', configB],
])('cpu backend, tiny model %s', (_label, cfg) => {
  const V = cfg.vocabSize;

  it('matches the float64 reference at every position', async () => {
    const { model, ref } = await makeTiny(cfg, 1);
    const ctx = await model.createContext(64);
    const tokens = randomTokens(seededRandom(7), 24, V);
    const out = await chain(ctx, tokens, 0);
    const want = refForward(cfg, ref, tokens);
    for (let p = 0; p < tokens.length; p++) expectClose(row(out.logits!, p, V), want[p], `position ${p}`);
    // Decoding one token at a time reaches the same numbers.
    await ctx.truncate(0);
    const steps = await singles(ctx, tokens);
    for (let p = 0; p < tokens.length; p++) expectClose(steps[p], want[p], `single step ${p}`);
  });

  it('skipping sub-layers matches the hand-computed reference; skipping nothing is the full model', async () => {
    const { model, ref } = await makeTiny(cfg, 2);
    const ctx = await model.createContext(64);
    const tokens = randomTokens(seededRandom(8), 16, V);
    const full = await chain(ctx, tokens, 0);
    await ctx.truncate(0);
    const none = await chain(ctx, tokens, 0, { skip: new Uint8Array(2 * cfg.numLayers) });
    expectSameBits(none.logits!, full.logits!, 'all-zero skip plan');

    const L = cfg.numLayers;
    const plans = [
      skipPlan(L, [[1, 'attn']]),
      skipPlan(L, [[0, 'mlp']]),
      skipPlan(L, [[0, 'attn'], [L - 1, 'mlp']]),
      skipPlan(L, [[L - 1, 'attn'], [L - 1, 'mlp']]),
      skipPlan(L, Array.from({ length: L }, (_, l) => [l, 'attn'] as [number, 'attn'])),
    ];
    for (const plan of plans) {
      await ctx.truncate(0);
      const out = await chain(ctx, tokens, 0, { skip: plan });
      const want = refForward(cfg, ref, tokens, plan);
      for (let p = 0; p < tokens.length; p++) expectClose(row(out.logits!, p, V), want[p], `plan ${plan} position ${p}`);
      let differs = false;
      for (let i = 0; i < out.logits!.length; i++) differs ||= out.logits![i] !== full.logits![i];
      expect(differs, `plan ${plan} changes the logits`).toBe(true);
    }
  });

  it('a tree forwarded in one call equals each root-to-node path fed one token at a time (bitwise)', async () => {
    const { model } = await makeTiny(cfg, 3);
    const ctx = await model.createContext(128);
    const rnd = seededRandom(11);
    for (let trial = 0; trial < 4; trial++) {
      const prefix = randomTokens(rnd, 3 + trial, V);
      await ctx.truncate(0);
      await chain(ctx, prefix, 0);
      await ctx.commit(iota(prefix.length));
      const P = prefix.length;

      // Random forest: each node hangs off an earlier node or the prefix; slots ascend with gaps.
      const n = 8 + Math.floor(rnd() * 25);
      const parentIdx: number[] = [], slots: number[] = [], tokens = randomTokens(rnd, n, V);
      let slot = P;
      for (let i = 0; i < n; i++) {
        parentIdx.push(i === 0 || rnd() < 0.2 ? -1 : Math.floor(rnd() * i));
        slot += rnd() < 0.2 ? 2 : 1;
        slots.push(slot);
      }
      const tree = await ctx.forward({
        tokens: Int32Array.from(tokens),
        slots: Int32Array.from(slots),
        parents: Int32Array.from(parentIdx.map((p) => (p < 0 ? -1 : slots[p]))),
        wantLogits: true,
      });

      for (let i = 0; i < n; i++) {
        const path: number[] = [];
        for (let j = i; j >= 0; j = parentIdx[j]) path.unshift(tokens[j]);
        await ctx.truncate(P);
        const steps = await singles(ctx, path);
        expectSameBits(row(tree.logits!, i, V), steps[steps.length - 1], `trial ${trial} node ${i} (depth ${path.length})`);
      }
    }
  });

  it('a draft tree (layers skipped) equals its paths forwarded token by token as pending chains (bitwise)', async () => {
    const { model } = await makeTiny(cfg, 4);
    const ctx = await model.createContext(128);
    const rnd = seededRandom(12);
    const skip = skipPlan(cfg.numLayers, [[1, 'attn'], [0, 'mlp']]);
    const prefix = randomTokens(rnd, 5, V);
    await chain(ctx, prefix, 0);
    await ctx.commit(iota(5));
    const n = 20;
    const parentIdx = Array.from({ length: n }, (_, i) => (i === 0 || rnd() < 0.2 ? -1 : Math.floor(rnd() * i)));
    const tokens = randomTokens(rnd, n, V);
    const tree = await ctx.forward({
      tokens: Int32Array.from(tokens),
      slots: iota(n, 5),
      parents: Int32Array.from(parentIdx.map((p) => (p < 0 ? -1 : 5 + p))),
      skip,
      wantLogits: true,
    });
    for (let i = 0; i < n; i++) {
      const path: number[] = [];
      for (let j = i; j >= 0; j = parentIdx[j]) path.unshift(tokens[j]);
      await ctx.truncate(5);
      let last: ForwardOutput | undefined;
      for (let k = 0; k < path.length; k++)
        last = await ctx.forward({
          tokens: Int32Array.of(path[k]),
          slots: Int32Array.of(5 + k),
          parents: Int32Array.of(k === 0 ? -1 : 5 + k - 1),
          skip,
          wantLogits: true,
        });
      expectSameBits(row(tree.logits!, i, V), last!.logits!, `draft node ${i}`);
    }
  });

  it('a chain forwarded at once equals single steps, for any thread count (bitwise)', async () => {
    const weights = randomWeights(loadAddon().createModel(cfg, { backend: 'cpu', threads: 1 }), 5);
    const tokens = randomTokens(seededRandom(13), 40, V);
    let base: Float32Array | undefined;
    for (const threads of [1, 2, 3]) {
      const { model } = await makeTiny(cfg, 5, threads, weights);
      expect(model.info().device).toContain(`${threads} thread`);
      const ctx = await model.createContext(64);
      const once = await chain(ctx, tokens, 0);
      await ctx.truncate(0);
      const steps = await singles(ctx, tokens);
      for (let p = 0; p < tokens.length; p++) expectSameBits(row(once.logits!, p, V), steps[p], `threads ${threads} position ${p}`);
      if (base) expectSameBits(once.logits!, base, `threads ${threads} vs 1`);
      base = once.logits!;
    }
  });

  it('rollback: truncate then re-forward reproduces the same bits', async () => {
    const { model } = await makeTiny(cfg, 6);
    const ctx = await model.createContext(64);
    const tokens = randomTokens(seededRandom(14), 12, V);
    const first = await singles(ctx, tokens);
    await ctx.truncate(4);
    // Overwrite the freed slots with other tokens first: stale KV must not leak into the redo.
    await singles(ctx, randomTokens(seededRandom(15), 8, V));
    await ctx.truncate(4);
    const redo = await chain(ctx, tokens.slice(4), 4);
    for (let p = 4; p < tokens.length; p++) expectSameBits(row(redo.logits!, p - 4, V), first[p], `position ${p}`);
    expect(ctx.committed).toBe(4);
  });

  it('committing a non-contiguous path compacts its KV: continuing equals decoding the path directly', async () => {
    const { model } = await makeTiny(cfg, 7);
    const ctx = await model.createContext(64);
    const rnd = seededRandom(16);
    const prefix = randomTokens(rnd, 4, V);
    const [a, x, c, y, z, e, f] = randomTokens(rnd, 7, V);
    await chain(ctx, prefix, 0);
    await ctx.commit(iota(4));
    const P = 4;
    // slots P..P+5: a(root) x(root) c(<-a) y(<-x) z(<-c) e(<-c); the path is a, c, e.
    await ctx.forward({
      tokens: Int32Array.of(a, x, c, y, z, e),
      slots: iota(6, P),
      parents: Int32Array.of(-1, -1, P, P + 1, P + 2, P + 2),
    });
    await ctx.commit(Int32Array.of(P, P + 2, P + 5));
    expect(ctx.committed).toBe(P + 3);
    const cont = await singles(ctx, [f, a]);

    await ctx.truncate(P);
    const direct = await singles(ctx, [a, c, e, f, a]);
    expectSameBits(cont[0], direct[3], 'next token after the compacted path');
    expectSameBits(cont[1], direct[4], 'the token after that');
  });

  it('a forward carrying `commit` equals commit() then forward(), and a bad commit changes nothing', async () => {
    const { model } = await makeTiny(cfg, 7);
    const rnd = seededRandom(19);
    const prefix = randomTokens(rnd, 5, V);
    const [a, x, c, f] = randomTokens(rnd, 4, V);
    const tree = { tokens: Int32Array.of(a, x, c), slots: iota(3, 5), parents: Int32Array.of(-1, -1, 5) };
    const next = { tokens: Int32Array.of(f), slots: Int32Array.of(7), parents: Int32Array.of(-1), wantLogits: true };
    const runs: Float32Array[] = [];
    for (const folded of [false, true]) {
      const ctx = await model.createContext(32);
      await ctx.forward({ tokens: Int32Array.from(prefix), slots: iota(5), parents: Int32Array.of(-1, 0, 1, 2, 3) });
      await ctx.commit(iota(5));
      await ctx.forward(tree);
      if (!folded) await ctx.commit(Int32Array.of(5, 7));
      else {
        // A commit that breaks the chain is refused before anything happens, then the right one.
        const e = await rejection(ctx.forward({ ...next, commit: Int32Array.of(6, 7) }));
        expect(e.code).toBe('E_INVALID_ARG');
        expect(ctx.committed).toBe(5);
      }
      const out = await ctx.forward(folded ? { ...next, commit: Int32Array.of(5, 7) } : next);
      expect(ctx.committed).toBe(7);
      runs.push(out.logits!);
      ctx.dispose();
    }
    expectSameBits(runs[1], runs[0], 'folded commit');
  });

  it('argmax, top-k and outRows agree with the logits', async () => {
    const { model } = await makeTiny(cfg, 8);
    const ctx = await model.createContext(64);
    const tokens = randomTokens(seededRandom(17), 10, V);
    const all = await chain(ctx, tokens, 0, { topk: 16 });
    for (let r = 0; r < tokens.length; r++) {
      const l = row(all.logits!, r, V);
      let best = 0;
      for (let i = 1; i < V; i++) if (l[i] > l[best]) best = i;
      expect(all.argmax[r]).toBe(best);
      const ids = all.topkIds!.subarray(r * 16, r * 16 + 16);
      const probs = all.topkProbs!.subarray(r * 16, r * 16 + 16);
      expect(ids[0]).toBe(best);
      const order = Array.from({ length: V }, (_, i) => i).sort((i, j) => l[j] - l[i] || i - j);
      expect(Array.from(ids)).toEqual(order.slice(0, 16));
      const m = Math.max(...l);
      const z = l.reduce((s, v) => s + Math.exp(v - m), 0);
      for (let j = 0; j < 16; j++) expect(Math.abs(probs[j] - Math.exp(l[ids[j]] - m) / z)).toBeLessThan(1e-6);
    }
    // Only the requested rows come back, and they are the same numbers.
    await ctx.truncate(0);
    const some = await chain(ctx, tokens, 0, { topk: 3, outRows: Int32Array.of(1, 4, 9) });
    expect(some.argmax.length).toBe(3);
    expect(some.logits!.length).toBe(3 * V);
    expect(some.topkIds!.length).toBe(9);
    [1, 4, 9].forEach((r, k) => {
      expectSameBits(row(some.logits!, k, V), row(all.logits!, r, V), `outRow ${r}`);
      expect(some.argmax[k]).toBe(all.argmax[r]);
      expect(Array.from(some.topkIds!.subarray(3 * k, 3 * k + 3))).toEqual(Array.from(all.topkIds!.subarray(16 * r, 16 * r + 3)));
    });
    // Without wantLogits/topk only argmax is reported.
    await ctx.truncate(0);
    const bare = await ctx.forward({ tokens: Int32Array.from(tokens), slots: iota(10), parents: iota(10, -1) });
    expect(bare.logits).toBeUndefined();
    expect(Array.from(bare.argmax)).toEqual(Array.from(all.argmax));
  });

  it('rejects invalid forwards with E_INVALID_ARG and stays usable', async () => {
    const { model } = await makeTiny(cfg, 9);
    const ctx = await model.createContext(32);
    const tokens = randomTokens(seededRandom(18), 6, V);
    const want = await singles(ctx, tokens);
    await ctx.truncate(3);
    const one = (t: number, s: number, p: number, extra: Partial<ForwardRequest> = {}) =>
      ctx.forward({ tokens: Int32Array.of(t), slots: Int32Array.of(s), parents: Int32Array.of(p), ...extra });
    const bad: [string, () => Promise<unknown>][] = [
      ['token id out of range', () => one(V, 3, -1)],
      ['negative token id', () => one(-1, 3, -1)],
      ['slot below committed', () => one(1, 2, -1)],
      ['slot beyond capacity', () => one(1, 32, -1)],
      ['slot used twice', () => ctx.forward({ tokens: Int32Array.of(1, 2), slots: Int32Array.of(3, 3), parents: Int32Array.of(-1, -1) })],
      ['parent not pending', () => one(1, 5, 4)],
      ['skip plan of the wrong length', () => one(1, 3, -1, { skip: new Uint8Array(2 * cfg.numLayers - 1) })],
      ['topk too large', () => one(1, 3, -1, { topk: 17 })],
      ['outRows out of range', () => one(1, 3, -1, { outRows: Int32Array.of(1) })],
      ['quantized forward', () => one(1, 3, -1, { quant: 1 })],
    ];
    for (const [what, call] of bad) {
      const e = await rejection(call());
      expect(e.code, what).toBe('E_INVALID_ARG');
    }
    // Full model over an ancestor whose KV came from a draft pass.
    await ctx.truncate(3);
    await one(tokens[3], 3, -1, { skip: skipPlan(cfg.numLayers, [[0, 'attn']]) });
    const e = await rejection(one(tokens[4], 4, 3));
    expect(e.code).toBe('E_INVALID_ARG');
    expect(e.message).toMatch(/draft/);
    // Re-forwarding the ancestor in the same batch is the way: and the context is still usable.
    await ctx.truncate(3);
    const redo = await chain(ctx, tokens.slice(3), 3);
    for (let p = 3; p < 6; p++) expectSameBits(row(redo.logits!, p - 3, V), want[p], `after errors, position ${p}`);
    await ctx.commit(iota(3, 3));
    expect(ctx.committed).toBe(6);
  });
});

describe('cpu backend, loading and info', () => {
  it('F16 and BF16 weights convert exactly', async () => {
    const addon = loadAddon();
    const specs = addon.createModel(configA, { backend: 'cpu', threads: 1 }).tensorSpecs();
    const rnd = seededRandom(21);
    // Random 16-bit patterns (finite, |x| < 2: subnormals included for f16) and their exact values.
    const f16Value = (h: number) => {
      const e = (h >> 10) & 31, m = h & 1023, s = h & 0x8000 ? -1 : 1;
      return s * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
    };
    const pattern = (kind: 'F16' | 'BF16', n: number) => {
      const h = new Uint16Array(n), v = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const sign = rnd() < 0.5 ? 0x8000 : 0;
        if (kind === 'F16') {
          h[i] = sign | (Math.floor(rnd() * 16) << 10) | Math.floor(rnd() * 1024);
          v[i] = f16Value(h[i]);
        } else {
          h[i] = sign | ((112 + Math.floor(rnd() * 16)) << 7) | Math.floor(rnd() * 128);
          v[i] = new Float32Array(new Uint32Array([h[i] << 16]).buffer)[0];
        }
      }
      return { h, v };
    };
    for (const kind of ['F16', 'BF16'] as const) {
      const w = new Map(specs.map((s) => [s.name, pattern(kind, s.shape.reduce((a, b) => a * b, 1))]));
      const run = async (as16: boolean) => {
        const m = addon.createModel(configA, { backend: 'cpu', threads: 1 });
        for (const s of specs) {
          const t = w.get(s.name)!;
          await m.setTensor(s.name, as16 ? kind : 'F32', s.shape, bytes(as16 ? t.h : t.v));
        }
        const ctx = await m.createContext(16);
        return (await chain(ctx, [1, 2, 3, 4, 5], 0)).logits!;
      };
      const a = await run(true), b = await run(false);
      expect(a.every(Number.isFinite), kind).toBe(true);
      expectSameBits(a, b, `${kind} vs the same values as F32`);
    }
  });

  it('ties in argmax and top-k go to the lower id', async () => {
    const addon = loadAddon();
    const weights = randomWeights(addon.createModel(configA, { backend: 'cpu', threads: 1 }), 22);
    weights.set('lm_head.weight', new Float32Array(configA.vocabSize * configA.hiddenSize));  // every logit 0
    const { model } = await makeTiny(configA, 22, 2, weights);
    const ctx = await model.createContext(16);
    const out = await chain(ctx, [5, 6], 0, { topk: 16 });
    expect(Array.from(out.argmax)).toEqual([0, 0]);
    expect(Array.from(out.topkIds!.subarray(0, 16))).toEqual(Array.from(iota(16)));
    for (const p of out.topkProbs!) expect(p).toBeCloseTo(1 / configA.vocabSize, 7);
  });

  it('reports its device, weight bytes and KV bytes per slot', async () => {
    const { model, cfg } = await makeTiny(configA, 1, 3);
    const info = model.info();
    expect(info.backend).toBe('cpu');
    expect(info.device).toBe('cpu (3 threads)');
    const params = model.tensorSpecs().reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    expect(info.weightBytes).toBe(4 * params);
    expect(info.kvBytesPerSlot).toBe(2 * cfg.numLayers * cfg.numKvHeads * cfg.headDim * 4);
  });

  it('dummy weights are deterministic per seed', async () => {
    const addon = loadAddon();
    const logits = async (seed: number, threads: number) => {
      const m = addon.createModel(configB, { backend: 'cpu', threads });
      await m.fillDummy(seed);
      const ctx = await m.createContext(16);
      return (await chain(ctx, [3, 1, 4, 1, 5], 0)).logits!;
    };
    const a = await logits(42, 1), b = await logits(42, 3), c = await logits(43, 1);
    expectSameBits(a, b, 'same seed');
    expect(Array.from(a)).not.toEqual(Array.from(c));
  });

  it('the AVX2 and baseline SIMD paths give the same bits', () => {
    // Each path is chosen once per process, so compare two child processes.
    const script = `
      const m = require(${JSON.stringify(addonPath())}).createModel(${JSON.stringify(configB)}, { backend: 'cpu', threads: 2 });
      (async () => {
        await m.fillDummy(7);
        const ctx = await m.createContext(64);
        const n = 40, t = Int32Array.from({ length: n }, (_, i) => (i * 17) % ${configB.vocabSize});
        const r = await ctx.forward({ tokens: t, slots: Int32Array.from({ length: n }, (_, i) => i),
          parents: Int32Array.from({ length: n }, (_, i) => i - 1), wantLogits: true });
        process.stdout.write(Buffer.from(r.logits.buffer).toString('base64'));
      })();`;
    const run = (noAvx2: boolean) => {
      const env = { ...process.env, CASSPEC_CPU_NO_AVX2: noAvx2 ? '1' : '0' };
      const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    };
    const simd = run(false);
    const base = run(true);
    expect(simd.length).toBeGreaterThan(100);
    expect(base).toBe(simd);
  });
});

describe('engine state after a rejected forward', () => {
  // Known engine issue (native/engine/context.cpp): the draft-ancestor and position checks run
  // after the batch's tree was recorded, so a rejected call leaves its slots pending. Remove
  // `.fails` once the engine validates everything before touching its state.
  it('a rejected full-model forward over a draft ancestor leaves no pending slots behind', async () => {
    const { model } = await makeTiny(configA, 10);
    const ctx = await model.createContext(16);
    await ctx.forward({ tokens: Int32Array.of(1), slots: Int32Array.of(0), parents: Int32Array.of(-1), skip: skipPlan(3, [[0, 'mlp']]) });
    await rejection(ctx.forward({ tokens: Int32Array.of(2), slots: Int32Array.of(1), parents: Int32Array.of(0) }));
    // Slot 1 should be free again: using it as a root must work.
    await ctx.forward({ tokens: Int32Array.of(2), slots: Int32Array.of(1), parents: Int32Array.of(-1) });
  });
});
