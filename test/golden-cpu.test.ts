// Acceptance: the CPU backend reproduces transformers' float32 LlamaForCausalLM (golden.json) on the
// real test models: logits within 1e-4 relative at every position, identical greedy continuations.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { modelDir, repoRoot } from './reference/models.js';
import { nativeConfig, readModelTensors } from './reference/safetensors.js';

// The one place this file finds the native addon ($CASSPEC_NATIVE, else the cmake-js builds).
function loadAddon(): any {
  const require = createRequire(import.meta.url);
  const candidates = [process.env.CASSPEC_NATIVE, 'build/Release/casspec.node', 'build/cpu/Release/casspec.node'];
  let last: unknown;
  for (const c of candidates) {
    if (!c) continue;
    try {
      return require(join(repoRoot, c));
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

interface GoldenCase {
  prompt_ids: number[];
  greedy_ids: number[];
  top8_ids: number[][];
  top8_logits: number[][];
}

const TOL = 1e-4;
const close = (a: number, b: number) => Math.abs(a - b) <= TOL * Math.max(1, Math.abs(b));

async function loadModel(name: string) {
  const dir = modelDir(name);
  const addon = loadAddon();
  const model = addon.createModel(nativeConfig(dir), { backend: 'cpu', threads: 2 });
  const tensors = readModelTensors(dir);
  for (const spec of model.tensorSpecs() as { name: string }[]) {
    const t = tensors.get(spec.name);
    if (!t) throw new Error(`${name}: tensor ${spec.name} missing from the safetensors files`);
    await model.setTensor(spec.name, t.dtype, t.shape, t.data);
  }
  const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as { cases: GoldenCase[] };
  return { model, golden, vocab: nativeConfig(dir).vocabSize as number };
}

// Position p's logits against golden: the values at golden's top-8 ids, and our own top-8 values
// in order (which checks the ranking without tripping over near-ties between ids).
function checkPosition(row: Float32Array, ourTop: Int32Array, ids: number[], want: number[], where: string) {
  for (let j = 0; j < ids.length; j++) {
    if (!close(row[ids[j]], want[j]))
      throw new Error(`${where}: logit of id ${ids[j]} is ${row[ids[j]]}, golden ${want[j]}`);
    if (!close(row[ourTop[j]], want[j]))
      throw new Error(`${where}: our top-${j + 1} logit is ${row[ourTop[j]]} (id ${ourTop[j]}), golden ${want[j]} (id ${ids[j]})`);
  }
}

describe.each(['pycode-tiny', 'pycode-small'])('golden logits on the cpu backend: %s', (name) => {
  it('matches golden.json at every position and continues greedily the same way', async () => {
    const { model, golden, vocab } = await loadModel(name);
    const ctx = await model.createContext(256);
    expect(golden.cases.length).toBeGreaterThan(0);
    for (const [ci, c] of golden.cases.entries()) {
      await ctx.truncate(0);
      const P = c.prompt_ids.length;
      const iota = Int32Array.from({ length: P }, (_, i) => i);
      let out = await ctx.forward({
        tokens: Int32Array.from(c.prompt_ids),
        slots: iota,
        parents: iota.map((i) => i - 1),
        wantLogits: true,
        topk: 8,
      });
      for (let p = 0; p < P; p++)
        checkPosition(out.logits.subarray(p * vocab, (p + 1) * vocab), out.topkIds.subarray(p * 8, p * 8 + 8),
          c.top8_ids[p], c.top8_logits[p], `${name} case ${ci} position ${p}`);
      await ctx.commit(iota);
      const generated: number[] = [];
      for (let g = 0; g < c.greedy_ids.length; g++) {
        const next = out.argmax[out.argmax.length - 1];
        generated.push(next);
        if (next !== c.greedy_ids[g]) break;  // reported by the toEqual below
        const slot = P + g;
        out = await ctx.forward({ tokens: Int32Array.of(next), slots: Int32Array.of(slot), parents: Int32Array.of(-1), wantLogits: true, topk: 8 });
        await ctx.commit(Int32Array.of(slot));
        checkPosition(out.logits, out.topkIds, c.top8_ids[slot], c.top8_logits[slot], `${name} case ${ci} position ${slot}`);
      }
      expect(generated).toEqual(c.greedy_ids);
    }
    ctx.dispose();
    model.dispose();
  }, 120_000);
});
