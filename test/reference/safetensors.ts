// A throwaway safetensors reader for tests (the real loader lives in ts/): an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}} with offsets
// relative to the end of the header, then the raw little-endian data.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export interface RawTensor {
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
  data: Uint8Array;
}

export function readSafetensors(file: string): Map<string, RawTensor> {
  const buf = readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: RawTensor['dtype']; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLen;
  const out = new Map<string, RawTensor>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, e] = t.data_offsets;
    out.set(name, { dtype: t.dtype, shape: t.shape, data: new Uint8Array(buf.buffer, buf.byteOffset + base + b, e - b) });
  }
  return out;
}

/** Every tensor of every *.safetensors file in a model folder (single file or shards). */
export function readModelTensors(dir: string): Map<string, RawTensor> {
  const all = new Map<string, RawTensor>();
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort())
    for (const [k, v] of readSafetensors(join(dir, f))) all.set(k, v);
  return all;
}

/** The native config fields from a Hugging Face config.json. */
export function nativeConfig(dir: string) {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  return {
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads ?? c.num_attention_heads,
    headDim: c.head_dim ?? c.hidden_size / c.num_attention_heads,
    intermediateSize: c.intermediate_size,
    maxPositions: c.max_position_embeddings,
    ropeTheta: c.rope_parameters?.rope_theta ?? c.rope_theta ?? 10000,
    rmsNormEps: c.rms_norm_eps,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
  };
}
