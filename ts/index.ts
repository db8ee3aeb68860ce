// casspec: lossless self-speculative decoding for Llama-family models.
export { Model, Generation } from './model.js';
export type { LoadOptions, DummyLoadOptions, GenerateOptions, LoadProgress, BackendChoice, SchedulingState } from './model.js';
export type { GenerateChunk, GenerationResult, GenerationStats, FinishReason } from './generate.js';
export { CasspecError } from './errors.js';
export type { ErrorCode } from './errors.js';
export { strategyNames } from './decode/registry.js';
export type { Strategy, StepContext } from './decode/strategy.js';
export type { LlamaConfig } from './loader/config.js';
