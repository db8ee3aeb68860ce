// The real test models load: config fields, weight files (single / sharded), and every tensor's
// name, shape and dtype match what a Llama of that config needs.
import { describe, expect, it } from 'vitest';
import { readLlamaConfig, type LlamaConfig } from '../ts/loader/config.js';
import { iterateTensors, listWeightFiles } from '../ts/loader/weights.js';
import { loadTokenizer } from '../ts/loader/tokenizer.js';
import { useTempDir } from './fixtures/temp-dir.js';
import { writeTinyModel } from './fixtures/tiny-model.js';
import { modelDir } from './reference/models.js';

/** name -> shape of every tensor a Llama of this config has (mirrors native tensorSpecs). */
function expectedTensors(c: LlamaConfig): Map<string, number[]> {
  const H = c.hiddenSize, Q = c.numHeads * c.headDim, KV = c.numKvHeads * c.headDim, F = c.intermediateSize, V = c.vocabSize;
  const m = new Map<string, number[]>([['model.embed_tokens.weight', [V, H]], ['model.norm.weight', [H]]]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [V, H]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    m.set(p + 'input_layernorm.weight', [H]);
    m.set(p + 'self_attn.q_proj.weight', [Q, H]);
    m.set(p + 'self_attn.k_proj.weight', [KV, H]);
    m.set(p + 'self_attn.v_proj.weight', [KV, H]);
    m.set(p + 'self_attn.o_proj.weight', [H, Q]);
    m.set(p + 'post_attention_layernorm.weight', [H]);
    m.set(p + 'mlp.gate_proj.weight', [F, H]);
    m.set(p + 'mlp.up_proj.weight', [F, H]);
    m.set(p + 'mlp.down_proj.weight', [H, F]);
  }
  return m;
}

async function checkFolder(dir: string, config: LlamaConfig): Promise<Set<string>> {
  const want = expectedTensors(config);
  const seen = new Map<string, number[]>();
  const files = new Set<string>();
  const bytes = config.torchDtype === 'F32' ? 4 : 2;
  for await (const t of iterateTensors(dir)) {
    expect(t.dtype, t.name).toBe(config.torchDtype);
    expect(t.data.length, t.name).toBe(t.shape.reduce((a, b) => a * b, 1) * bytes);
    seen.set(t.name, t.shape);
    files.add(t.file);
  }
  expect(seen).toEqual(want);
  return files;
}

describe('real models', () => {
  it('pycode-tiny: one float32 file, transformers-5 config', async () => {
    const dir = modelDir('pycode-tiny');
    const c = await readLlamaConfig(dir);
    expect(c).toEqual({
      vocabSize: 8192,
      hiddenSize: 128,
      numLayers: 4,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 32,
      intermediateSize: 352,
      maxPositions: 2048,
      ropeTheta: 10000,
      rmsNormEps: 1e-5,
      tieWordEmbeddings: true,
      torchDtype: 'F32',
      bosTokenId: 0,
      eosTokenIds: [0],
    });
    expect((await listWeightFiles(dir)).files).toHaveLength(1);
    expect((await checkFolder(dir, c)).size).toBe(1);
  });

  it('pycode-small: three bfloat16 shards with an index', async () => {
    const dir = modelDir('pycode-small');
    const c = await readLlamaConfig(dir);
    expect(c).toMatchObject({ numLayers: 16, hiddenSize: 256, headDim: 64, intermediateSize: 704, torchDtype: 'BF16', tieWordEmbeddings: true });
    const wf = await listWeightFiles(dir);
    expect(wf.files).toHaveLength(3);
    expect(wf.weightMap?.size).toBe(expectedTensors(c).size);
    expect((await checkFolder(dir, c)).size).toBe(3);
  });
});

describe('writeTinyModel fixture', () => {
  const tmp = useTempDir('casspec-tiny-');

  it('writes a folder the loader accepts, seeded and reproducible', async () => {
    const opts = { seed: 7, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, tied: false, dtype: 'F16' as const };
    await writeTinyModel(`${tmp()}/a`, opts);
    await writeTinyModel(`${tmp()}/b`, opts);
    const c = await readLlamaConfig(`${tmp()}/a`);
    expect(c).toMatchObject({ vocabSize: 8192, hiddenSize: 32, headDim: 8, numKvHeads: 2, torchDtype: 'F16', tieWordEmbeddings: false });
    await checkFolder(`${tmp()}/a`, c);
    const a: Uint8Array[] = [];
    for await (const t of iterateTensors(`${tmp()}/a`)) a.push(t.data);
    let i = 0;
    for await (const t of iterateTensors(`${tmp()}/b`)) expect(Buffer.compare(t.data, a[i++]), t.name).toBe(0);
    expect((await loadTokenizer(`${tmp()}/a`)).encode('def f():').length).toBeGreaterThan(1);
  });
});
