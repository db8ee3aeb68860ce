// The model-folder loader: config.json, safetensors weights, tokenizer.
export { parseLlamaConfig, readLlamaConfig, llamaPreset, llamaPresetNames, type LlamaConfig, type LlamaPresetName } from './config.js';
export { openSafetensors, type SafetensorsFile, type SafetensorsDType, type TensorEntry } from './safetensors.js';
export { listWeightFiles, iterateTensors, type WeightFiles, type LoadedTensor } from './weights.js';
export { loadTokenizer, type TextTokenizer } from './tokenizer.js';
export { createStreamDecoder, type StreamDecoder } from './stream-decoder.js';
