// The typed N-API boundary. Everything native goes through these few calls; see
// native/binding/addon.cpp for the other side.
import { existsSync } from 'node:fs';
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
  /** 1: also make the int8 weight copy that forwards with quant 1 need (0 = none, the default). */
  quantWeights?: number;
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
  /** 0 = full precision; 1 = int8 W8A8 draft (needs the model created with quantWeights: 1). */
  quant?: number;
  wantLogits?: boolean;
  topk?: number;
  /**
   * A path to commit first, as `commit(path)` would, in the same native call: a decoding step then
   * costs one round trip instead of two. `slots` are numbered after that commit. If the pass fails,
   * the commit may already be applied.
   */
  commit?: Int32Array;
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
  /** Bytes of the quantized weight copy (0 unless loaded with draftQuant). */
  quantBytes: number;
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
  /** Live native objects (for leak tests). */
  debugCounts(): { models: number; contexts: number; cpuKvBytes: number };
}

export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

let addon: NativeAddon | undefined;
let choice: { path: string; why: string; skipped: string[] } | undefined;

/**
 * Where the addon comes from, in order: $CASSPEC_NATIVE; the prebuilt binaries in
 * prebuilds/<platform>-<arch>/ (the CUDA variant when it finds a usable GPU, else the CPU-only
 * one); then a local build in build/Release (through node-gyp-build).
 */
function locate(): { path: string; why: string }[] {
  const explicit = process.env.CASSPEC_NATIVE;
  if (explicit) return [{ path: explicit, why: '$CASSPEC_NATIVE' }];
  const dir = join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`);
  const out: { path: string; why: string }[] = [];
  for (const variant of ['cuda', 'cpu']) {
    const p = join(dir, `casspec.${variant}.node`);
    if (existsSync(p)) out.push({ path: p, why: `prebuilt ${variant} binary` });
  }
  const require = createRequire(import.meta.url);
  try {
    out.push({ path: require('node-gyp-build').path(packageRoot) as string, why: 'local build' });
  } catch {
    /* nothing built: reported below if nothing else loads */
  }
  return out;
}

/** Loads the addon once (see locate()). */
export function native(): NativeAddon {
  if (addon) return addon;
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  const candidates = locate();
  for (const [i, c] of candidates.entries()) {
    try {
      const a = require(c.path) as NativeAddon;
      const cuda = a.cudaStatus();
      // A CUDA-capable prebuild is only worth it with a usable GPU; otherwise try the CPU one next.
      if (c.why === 'prebuilt cuda binary' && !cuda.usable && i + 1 < candidates.length) {
        errors.push(`${c.path}: ${cuda.reason}`);
        continue;
      }
      addon = a;
      choice = { path: c.path, why: c.why, skipped: errors };
      return a;
    } catch (e) {
      errors.push(`${c.path}: ${(e as Error).message}`);
    }
  }
  throw new CasspecError(
    'E_NATIVE',
    `could not load the casspec native addon (${errors.join('; ') || 'no binary found'}); run \`npm run build:native\``,
  );
}

/** Which binary was loaded and why (for `casspec doctor`). */
export function nativeChoice(): { path: string; why: string; skipped: string[] } {
  native();
  return choice!;
}
