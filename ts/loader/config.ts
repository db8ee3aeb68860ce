// Hugging Face config.json -> LlamaConfig, checked field by field. Anything casspec cannot run
// exactly (other architectures, RoPE scaling, biases, other activations, quantization) is refused
// here with an E_CONFIG naming the file and the field, before any weight is read.
import { join } from 'node:path';
import type { NativeConfig } from '../native.js';
import { CasspecError } from '../errors.js';
import { isPlainObject, readJsonFile } from './json-file.js';

/** The model's shape (the fields the native engine takes) plus what only TypeScript needs. */
export interface LlamaConfig extends NativeConfig {
  torchDtype: 'F32' | 'F16' | 'BF16';
  bosTokenId?: number;
  eosTokenIds: number[];
}

export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;
const MAX_INT = 2 ** 31 - 1; // native fields are C ints

const DTYPES: Record<string, LlamaConfig['torchDtype']> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** Reads and checks <dir>/config.json, adding generation_config.json's eos ids when present. */
export async function readLlamaConfig(dir: string): Promise<LlamaConfig> {
  const file = join(dir, 'config.json');
  const config = parseLlamaConfig(await readJsonFile(file, { code: 'E_CONFIG', maxBytes: MAX_CONFIG_BYTES }), file);
  // generate() in transformers stops on generation_config's eos ids; so do we.
  const genFile = join(dir, 'generation_config.json');
  const gen = await readJsonFile(genFile, { code: 'E_CONFIG', maxBytes: MAX_CONFIG_BYTES, optional: true });
  if (gen !== undefined) {
    if (!isPlainObject(gen)) throw new CasspecError('E_CONFIG', `${genFile}: expected a JSON object`);
    for (const id of tokenIds(gen, 'eos_token_id', genFile, config.vocabSize))
      if (!config.eosTokenIds.includes(id)) config.eosTokenIds.push(id);
  }
  return config;
}

/** Checks a parsed config.json; `file` names it in errors. */
export function parseLlamaConfig(json: unknown, file: string): LlamaConfig {
  const fail = (field: string, msg: string): never => {
    throw new CasspecError('E_CONFIG', `${file}: ${field} ${msg}`);
  };
  if (!isPlainObject(json)) throw new CasspecError('E_CONFIG', `${file}: expected a JSON object`);
  const c = json;
  const has = (k: string) => c[k] !== undefined && c[k] !== null;

  checkArchitecture(c, file);
  if (has('quantization_config')) fail('quantization_config', 'is set: quantized checkpoints are not supported');
  for (const k of ['attention_bias', 'mlp_bias']) {
    if (!has(k)) continue;
    if (typeof c[k] !== 'boolean') fail(k, `must be a boolean, got ${JSON.stringify(c[k])}`);
    if (c[k] === true) fail(k, 'is true: Llama with biases is not supported');
  }
  if (has('hidden_act') && c.hidden_act !== 'silu') fail('hidden_act', `is ${JSON.stringify(c.hidden_act)}: only "silu" is supported`);

  const int = (k: string): number => {
    const v = c[k];
    if (!has(k)) return fail(k, 'is missing');
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) return fail(k, `must be a positive integer, got ${JSON.stringify(v)}`);
    if (v > MAX_INT) return fail(k, `is too large (${v})`);
    return v;
  };
  const num = (k: string, dflt: number): number => {
    if (!has(k)) return dflt;
    const v = c[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return fail(k, `must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };

  const vocabSize = int('vocab_size');
  const hiddenSize = int('hidden_size');
  const numLayers = int('num_hidden_layers');
  const numHeads = int('num_attention_heads');
  const numKvHeads = has('num_key_value_heads') ? int('num_key_value_heads') : numHeads;
  if (numHeads % numKvHeads !== 0) fail('num_attention_heads', `(${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  let headDim: number;
  if (has('head_dim')) headDim = int('head_dim');
  else if (hiddenSize % numHeads === 0) headDim = hiddenSize / numHeads;
  else return fail('hidden_size', `(${hiddenSize}) is not a multiple of num_attention_heads (${numHeads}) and head_dim is absent`);
  if (headDim % 2 !== 0) fail('head_dim', `(${headDim}) must be even (RoPE rotates pairs)`);
  const intermediateSize = int('intermediate_size');
  const maxPositions = int('max_position_embeddings');
  const ropeTheta = readRopeTheta(c, file);
  const rmsNormEps = num('rms_norm_eps', 1e-6); // transformers' LlamaConfig default
  if (has('tie_word_embeddings') && typeof c.tie_word_embeddings !== 'boolean')
    fail('tie_word_embeddings', `must be a boolean, got ${JSON.stringify(c.tie_word_embeddings)}`);
  const tieWordEmbeddings = c.tie_word_embeddings === true; // LlamaConfig default: false
  const torchDtype = readDtype(c, file);

  const bos = tokenIds(c, 'bos_token_id', file, vocabSize);
  if (bos.length > 1) fail('bos_token_id', 'must be a single token id');
  const config: LlamaConfig = {
    vocabSize,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize,
    maxPositions,
    ropeTheta,
    rmsNormEps,
    tieWordEmbeddings,
    torchDtype,
    eosTokenIds: tokenIds(c, 'eos_token_id', file, vocabSize),
  };
  if (bos.length === 1) config.bosTokenId = bos[0];
  return config;
}

function checkArchitecture(c: Record<string, unknown>, file: string): void {
  const unsupported = (what: string) =>
    new CasspecError('E_CONFIG', `${file}: unsupported architecture ${what} (casspec runs LlamaForCausalLM)`);
  const archs = c.architectures;
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || !archs.every((a) => typeof a === 'string'))
      throw new CasspecError('E_CONFIG', `${file}: architectures must be a list of strings, got ${JSON.stringify(archs)}`);
    if (!archs.includes('LlamaForCausalLM')) throw unsupported(archs.length ? archs.join(', ') : '(empty architectures list)');
    return;
  }
  if (c.model_type !== 'llama') throw unsupported(`model_type ${JSON.stringify(c.model_type ?? null)}`);
}

// transformers <5: top-level rope_theta (+ optional rope_scaling); transformers 5: rope_parameters.
function readRopeTheta(c: Record<string, unknown>, file: string): number {
  const fail = (field: string, msg: string): never => {
    throw new CasspecError('E_CONFIG', `${file}: ${field} ${msg}`);
  };
  const thetaOf = (v: unknown, field: string): number | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return fail(field, `must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const checkType = (p: unknown, field: string): void => {
    if (p === undefined || p === null) return;
    if (!isPlainObject(p)) return fail(field, `must be an object, got ${JSON.stringify(p)}`);
    const type = p.rope_type ?? p.type ?? 'default';
    if (type !== 'default')
      fail(`${field}.rope_type`, `is ${JSON.stringify(type)}: RoPE scaling (llama3, linear, dynamic, yarn, ...) is not supported yet`);
    if (p.partial_rotary_factor !== undefined && p.partial_rotary_factor !== null && p.partial_rotary_factor !== 1)
      fail(`${field}.partial_rotary_factor`, 'is not 1: partial rotary embeddings are not supported');
  };
  checkType(c.rope_scaling, 'rope_scaling');
  checkType(c.rope_parameters, 'rope_parameters');
  const top = thetaOf(c.rope_theta, 'rope_theta');
  const params = isPlainObject(c.rope_parameters) ? thetaOf(c.rope_parameters.rope_theta, 'rope_parameters.rope_theta') : undefined;
  if (top !== undefined && params !== undefined && top !== params)
    fail('rope_theta', `(${top}) disagrees with rope_parameters.rope_theta (${params})`);
  return params ?? top ?? 10000;
}

function readDtype(c: Record<string, unknown>, file: string): LlamaConfig['torchDtype'] {
  const key = c.dtype !== undefined && c.dtype !== null ? 'dtype' : 'torch_dtype';
  const v = c[key];
  if (v === undefined || v === null) return 'F32'; // transformers' default
  const name = typeof v === 'string' ? v.replace(/^torch\./, '') : undefined;
  const d = name !== undefined && Object.hasOwn(DTYPES, name) ? DTYPES[name] : undefined;
  if (!d) throw new CasspecError('E_CONFIG', `${file}: ${key} ${JSON.stringify(v)} is not supported (float32, float16 or bfloat16)`);
  return d;
}

/** A token id field: absent/null -> [], an id, or a list of ids, each in 0..vocab-1. */
export function tokenIds(c: Record<string, unknown>, key: string, file: string, vocabSize: number): number[] {
  const v = c[key];
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const id of list)
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize)
      throw new CasspecError('E_CONFIG', `${file}: ${key} must be token ids in 0..${vocabSize - 1}, got ${JSON.stringify(v)}`);
  return [...new Set(list as number[])];
}

export { llamaPreset, llamaPresetNames, type LlamaPresetName } from './presets.js';

/** The native shape of a Llama config (what the native addon's createModel takes). */
export function nativeConfigOf(c: LlamaConfig): NativeConfig {
  return {
    vocabSize: c.vocabSize,
    hiddenSize: c.hiddenSize,
    numLayers: c.numLayers,
    numHeads: c.numHeads,
    numKvHeads: c.numKvHeads,
    headDim: c.headDim,
    intermediateSize: c.intermediateSize,
    maxPositions: c.maxPositions,
    ropeTheta: c.ropeTheta,
    rmsNormEps: c.rmsNormEps,
    tieWordEmbeddings: c.tieWordEmbeddings,
  };
}
