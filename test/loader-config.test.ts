// config.json parsing: both RoPE-theta spellings, defaults, presets, and a clear E_CONFIG naming
// the file and field for everything casspec cannot run.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { llamaPreset, llamaPresetNames, parseLlamaConfig, readLlamaConfig } from '../ts/loader/config.js';
import { expectCasspecError } from './fixtures/expect-error.js';
import { useTempDir } from './fixtures/temp-dir.js';

const FILE = '/models/x/config.json';

/** A transformers-4 style Llama config (top-level rope_theta, torch_dtype). */
const base = (): Record<string, unknown> => ({
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 1000,
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 128,
  max_position_embeddings: 256,
  rope_theta: 500000,
  rms_norm_eps: 1e-5,
  torch_dtype: 'float16',
  bos_token_id: 1,
  eos_token_id: [2, 3],
});
const parse = (over: Record<string, unknown>) => parseLlamaConfig({ ...base(), ...over }, FILE);

describe('parseLlamaConfig', () => {
  it('reads a transformers-4 config (top-level rope_theta)', () => {
    expect(parse({})).toEqual({
      vocabSize: 1000,
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      intermediateSize: 128,
      maxPositions: 256,
      ropeTheta: 500000,
      rmsNormEps: 1e-5,
      tieWordEmbeddings: false,
      torchDtype: 'F16',
      bosTokenId: 1,
      eosTokenIds: [2, 3],
    });
  });

  it('reads a transformers-5 config (rope_parameters.rope_theta, dtype)', () => {
    const c = parse({ rope_theta: undefined, torch_dtype: undefined, dtype: 'bfloat16', rope_parameters: { rope_theta: 1e6, rope_type: 'default' } });
    expect(c.ropeTheta).toBe(1e6);
    expect(c.torchDtype).toBe('BF16');
  });

  it('applies transformers defaults', () => {
    const c = parse({ num_key_value_heads: undefined, rope_theta: undefined, rms_norm_eps: undefined, torch_dtype: undefined, bos_token_id: null, eos_token_id: 7 });
    expect(c).toMatchObject({ numKvHeads: 4, ropeTheta: 10000, rmsNormEps: 1e-6, torchDtype: 'F32', eosTokenIds: [7], tieWordEmbeddings: false });
    expect(c.bosTokenId).toBeUndefined();
    expect(parse({ architectures: undefined }).hiddenSize).toBe(64); // model_type llama suffices
    expect(parse({ head_dim: 32 }).headDim).toBe(32);
    expect(parse({ rope_scaling: null, tie_word_embeddings: true }).tieWordEmbeddings).toBe(true);
  });

  it.each([
    ['GPT2LMHeadModel', { architectures: ['GPT2LMHeadModel'] }, 'unsupported architecture GPT2LMHeadModel (casspec runs LlamaForCausalLM)'],
    ['model_type without architectures', { architectures: undefined, model_type: 'mistral' }, 'unsupported architecture model_type "mistral"'],
    ['llama3 rope', { rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'rope_scaling.rope_type is "llama3"'],
    ['linear rope (old "type" key)', { rope_scaling: { type: 'linear', factor: 2 } }, 'not supported yet'],
    ['yarn rope (transformers 5)', { rope_parameters: { rope_type: 'yarn', rope_theta: 500000 } }, 'rope_parameters.rope_type is "yarn"'],
    ['conflicting thetas', { rope_parameters: { rope_type: 'default', rope_theta: 10000 } }, 'disagrees'],
    ['attention bias', { attention_bias: true }, 'attention_bias is true'],
    ['mlp bias', { mlp_bias: true }, 'mlp_bias'],
    ['gelu', { hidden_act: 'gelu' }, 'hidden_act'],
    ['quantized', { quantization_config: { quant_method: 'gptq' } }, 'quantization_config'],
    ['missing hidden_size', { hidden_size: undefined }, 'hidden_size is missing'],
    ['string vocab', { vocab_size: '1000' }, 'vocab_size must be a positive integer'],
    ['zero layers', { num_hidden_layers: 0 }, 'num_hidden_layers must be a positive integer'],
    ['fractional ffn', { intermediate_size: 12.5 }, 'intermediate_size'],
    ['heads not a multiple of kv heads', { num_key_value_heads: 3 }, 'num_key_value_heads'],
    ['hidden not a multiple of heads', { hidden_size: 66 }, 'hidden_size'],
    ['odd head_dim', { head_dim: 15 }, 'head_dim'],
    ['negative eps', { rms_norm_eps: -1 }, 'rms_norm_eps'],
    ['theta zero', { rope_theta: 0 }, 'rope_theta'],
    ['int8 dtype', { torch_dtype: 'int8' }, 'torch_dtype "int8" is not supported'],
    ['tie as string', { tie_word_embeddings: 'yes' }, 'tie_word_embeddings'],
    ['eos out of vocab', { eos_token_id: [2, 5000] }, 'eos_token_id'],
    ['eos as string', { eos_token_id: '</s>' }, 'eos_token_id'],
    ['architectures not a list', { architectures: 'LlamaForCausalLM' }, 'architectures'],
  ])('rejects %s', async (_label, over, fragment) => {
    await expectCasspecError(() => parse(over), 'E_CONFIG', FILE, fragment);
  });

  it('rejects non-objects', async () => {
    await expectCasspecError(() => parseLlamaConfig([1], FILE), 'E_CONFIG', FILE);
    await expectCasspecError(() => parseLlamaConfig(null, FILE), 'E_CONFIG', FILE);
  });
});

describe('readLlamaConfig', () => {
  const tmp = useTempDir('casspec-config-');
  const folder = async (name: string, files: Record<string, string | Buffer>) => {
    const dir = join(tmp(), name);
    await mkdir(dir, { recursive: true });
    for (const [f, body] of Object.entries(files)) await writeFile(join(dir, f), body);
    return dir;
  };

  it('reads config.json and adds generation_config eos ids', async () => {
    const dir = await folder('ok', {
      'config.json': JSON.stringify(base()),
      'generation_config.json': JSON.stringify({ eos_token_id: [3, 4] }),
    });
    expect((await readLlamaConfig(dir)).eosTokenIds).toEqual([2, 3, 4]);
  });

  it('a missing config.json names the path', async () => {
    const dir = await folder('empty', {});
    await expectCasspecError(readLlamaConfig(dir), 'E_CONFIG', join(dir, 'config.json'), 'not found');
  });

  it('malformed JSON names the file', async () => {
    const dir = await folder('bad', { 'config.json': '{"vocab_size": 10,' });
    await expectCasspecError(readLlamaConfig(dir), 'E_CONFIG', join(dir, 'config.json'), 'malformed JSON');
  });

  it('an oversized config.json is refused before parsing', async () => {
    const dir = await folder('big', { 'config.json': Buffer.alloc(16 * 1024 * 1024 + 1, 0x20) });
    await expectCasspecError(readLlamaConfig(dir), 'E_CONFIG', join(dir, 'config.json'), 'limit');
  });

  it('an unknown architecture on disk', async () => {
    const dir = await folder('gpt2', { 'config.json': JSON.stringify({ ...base(), architectures: ['GPT2LMHeadModel'] }) });
    await expectCasspecError(readLlamaConfig(dir), 'E_CONFIG', join(dir, 'config.json'), 'GPT2LMHeadModel');
  });
});

describe('llamaPreset', () => {
  it('knows the three timing shapes', () => {
    expect(llamaPresetNames).toEqual(['llama-2-7b', 'llama-3-8b', 'tinyllama-1.1b']);
    expect(llamaPreset('llama-2-7b')).toMatchObject({ vocabSize: 32000, hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128, intermediateSize: 11008, maxPositions: 4096, ropeTheta: 10000, rmsNormEps: 1e-5, tieWordEmbeddings: false, torchDtype: 'F16' });
    expect(llamaPreset('llama-3-8b')).toMatchObject({ vocabSize: 128256, numKvHeads: 8, headDim: 128, intermediateSize: 14336, maxPositions: 8192, ropeTheta: 500000, torchDtype: 'BF16' });
    expect(llamaPreset('tinyllama-1.1b')).toMatchObject({ vocabSize: 32000, hiddenSize: 2048, numLayers: 22, numHeads: 32, numKvHeads: 4, headDim: 64, intermediateSize: 5632, maxPositions: 2048, torchDtype: 'BF16' });
  });

  it('returns copies and rejects unknown names', async () => {
    llamaPreset('llama-2-7b').eosTokenIds.push(99);
    expect(llamaPreset('llama-2-7b').eosTokenIds).toEqual([2]);
    await expectCasspecError(() => llamaPreset('gpt-4'), 'E_INVALID_ARG', 'gpt-4', 'llama-3-8b');
    await expectCasspecError(() => llamaPreset('toString'), 'E_INVALID_ARG');
  });
});
