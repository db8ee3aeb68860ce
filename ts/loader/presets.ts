// Shapes of well-known Llama models, for timing with dummy weights (no download needed).
import { CasspecError } from '../errors.js';
import type { LlamaConfig } from './config.js';

const PRESETS = {
  'llama-2-7b': {
    vocabSize: 32000, hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128,
    intermediateSize: 11008, maxPositions: 4096, ropeTheta: 10000, rmsNormEps: 1e-5,
    tieWordEmbeddings: false, torchDtype: 'F16', bosTokenId: 1, eosTokenIds: [2],
  },
  'llama-3-8b': {
    vocabSize: 128256, hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 8, headDim: 128,
    intermediateSize: 14336, maxPositions: 8192, ropeTheta: 500000, rmsNormEps: 1e-5,
    tieWordEmbeddings: false, torchDtype: 'BF16', bosTokenId: 128000, eosTokenIds: [128001],
  },
  'tinyllama-1.1b': {
    vocabSize: 32000, hiddenSize: 2048, numLayers: 22, numHeads: 32, numKvHeads: 4, headDim: 64,
    intermediateSize: 5632, maxPositions: 2048, ropeTheta: 10000, rmsNormEps: 1e-5,
    tieWordEmbeddings: false, torchDtype: 'BF16', bosTokenId: 1, eosTokenIds: [2],
  },
} satisfies Record<string, LlamaConfig>;

export type LlamaPresetName = keyof typeof PRESETS;
export const llamaPresetNames = Object.keys(PRESETS) as LlamaPresetName[];

/** A fresh copy of a preset's config; E_INVALID_ARG for unknown names. */
export function llamaPreset(name: string): LlamaConfig {
  if (!Object.hasOwn(PRESETS, name))
    throw new CasspecError('E_INVALID_ARG', `unknown model preset '${name}' (known: ${llamaPresetNames.join(', ')})`);
  const p: LlamaConfig = PRESETS[name as LlamaPresetName];
  return { ...p, eosTokenIds: [...p.eosTokenIds] };
}
