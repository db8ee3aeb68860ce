// The typed N-API boundary. Everything native goes through these few calls; see
// native/binding/addon.cpp for the other side.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CasspecError } from './errors.js';

export interface NativeConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  maxPositions: number;
  ropeTheta: number;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
}

export type TensorDType = 'F32' | 'F16' | 'BF16';

export interface NativeBackendOptions {
  backend: 'cpu' | 'cuda';
  threads?: number;
  device?: number;
  weightDType?: 'F16' | 'BF16';
}

export interface ForwardRequest {
  tokens: Int32Array;
  /** KV slot each token writes (>= committed). Parents must sit in lower slots than children. */
  slots: Int32Array;
  /** Parent slot of each token, or -1 when it directly follows the committed prefix. */
  parents: Int32Array;
  /** 2 entries per layer: [attn0, mlp0, attn1, mlp1, ...]; non-zero skips that sub-layer. */
  skip?: Uint8Array;
  /** Batch rows whose outputs are wanted (ascending); default all. */
  outRows?: Int32Array;
  quant?: number;
  wantLogits?: boolean;
  topk?: number;
}

export interface ForwardOutput {
  argmax: Int32Array;
  logits?: Float32Array;
  topkIds?: Int32Array;
  topkProbs?: Float32Array;
}

export interface NativeContext {
  forward(req: ForwardRequest): Promise<ForwardOutput>;
  commit(path: Int32Array): Promise<void>;
  truncate(n: number): Promise<void>;
  dispose(): void;
  readonly committed: number;
  readonly capacity: number;
}

export interface NativeModelInfo {
  backend: 'cpu' | 'cuda';
  device: string;
  weightBytes: number;
  kvBytesPerSlot: number;
}

export interface NativeModel {
  tensorSpecs(): { name: string; shape: number[] }[];
  setTensor(name: string, dtype: TensorDType, shape: number[], data: Uint8Array): Promise<void>;
  fillDummy(seed: number): Promise<void>;
  createContext(capacity: number): Promise<NativeContext>;
  info(): NativeModelInfo;
  dispose(): void;
}

export interface NativeAddon {
  createModel(config: NativeConfig, options: NativeBackendOptions): NativeModel;
  cudaStatus(): { usable: boolean; reason: string };
}

export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

let addon: NativeAddon | undefined;

/** Loads the addon once: $CASSPEC_NATIVE if set, else node-gyp-build's search (build/, prebuilds/). */
export function native(): NativeAddon {
  if (addon) return addon;
  const require = createRequire(import.meta.url);
  try {
    const explicit = process.env.CASSPEC_NATIVE;
    addon = (explicit ? require(explicit) : require('node-gyp-build')(packageRoot)) as NativeAddon;
  } catch (e) {
    throw new CasspecError(
      'E_NATIVE',
      `could not load the casspec native addon (${(e as Error).message}); run \`npm run build:native\``,
      { cause: e },
    );
  }
  return addon;
}
