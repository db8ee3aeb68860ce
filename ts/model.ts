// The public model object: load from a Hugging Face folder (or dummy weights), generate text.
import { CasspecError, fromNative } from './errors.js';
import { native, type NativeModel, type NativeModelInfo } from './native.js';
import { readLlamaConfig, llamaPreset, nativeConfigOf, type LlamaConfig } from './loader/config.js';
import { iterateTensors } from './loader/weights.js';
import { loadTokenizer, type TextTokenizer } from './loader/tokenizer.js';
import { createStrategy, DEFAULT_STRATEGY } from './decode/registry.js';
import type { Strategy } from './decode/strategy.js';
import { generationLoop, type GenerateChunk, type GenerationResult } from './generate.js';

export type BackendChoice = 'auto' | 'cpu' | 'cuda';

export interface LoadOptions {
  /** 'auto' (default) picks CUDA when a usable GPU and driver exist, else the CPU reference. */
  backend?: BackendChoice;
  /** Largest prompt + generation length (default: min(max_position_embeddings, 4096)). */
  contextLength?: number;
  /** CPU threads (default: all cores). */
  threads?: number;
  /** CUDA device ordinal. */
  device?: number;
  /** GPU weight storage type (default: the config's dtype; F32 models are stored as BF16). */
  weightDType?: 'F16' | 'BF16';
  signal?: AbortSignal;
  onProgress?: (p: LoadProgress) => void;
}

export interface LoadProgress {
  tensor: string;
  loaded: number;
  total: number;
}

export interface DummyLoadOptions extends LoadOptions {
  seed?: number;
  /** A folder with tokenizer.json, if text in/out is wanted. */
  tokenizerDir?: string;
}

export interface GenerateOptions {
  /** Most new tokens (default 256). */
  maxTokens?: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Strategy name (see strategyNames()) or a Strategy object. */
  strategy?: string | Strategy;
  /** Keep generating past end-of-sequence tokens (benchmarks). */
  ignoreEos?: boolean;
  signal?: AbortSignal;
}

/** A running generation: iterate it for streamed chunks, await `result` for the totals. */
export class Generation implements AsyncIterable<GenerateChunk> {
  private readonly iter: AsyncGenerator<GenerateChunk, GenerationResult>;
  private done?: Promise<GenerationResult>;
  private resolveDone!: (r: GenerationResult) => void;
  private rejectDone!: (e: unknown) => void;
  private started = false;

  constructor(iter: AsyncGenerator<GenerateChunk, GenerationResult>) {
    this.iter = iter;
    this.done = new Promise((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    this.done.catch(() => {}); // surfaced to whoever awaits `result` or iterates
  }

  async *[Symbol.asyncIterator](): AsyncIterator<GenerateChunk> {
    if (this.started) throw new CasspecError('E_INVALID_ARG', 'a Generation can be iterated once');
    this.started = true;
    try {
      for (;;) {
        const r = await this.iter.next();
        if (r.done) {
          this.resolveDone(r.value);
          return;
        }
        yield r.value;
      }
    } catch (e) {
      this.rejectDone(e);
      throw e;
    } finally {
      // Breaking out of a for-await loop lands here: stop the loop so its context is released.
      await this.iter.return(undefined as never).catch(() => {});
    }
  }

  /** The final text, tokens and statistics (drains the stream if nobody iterates it). */
  get result(): Promise<GenerationResult> {
    if (!this.started) {
      void (async () => {
        try {
          for await (const _ of this) void _;
        } catch {
          /* reported through this.done */
        }
      })();
    }
    return this.done!;
  }
}

export class Model {
  private disposed = false;

  private constructor(
    private readonly nativeModel: NativeModel,
    readonly config: LlamaConfig,
    readonly tokenizer: TextTokenizer | undefined,
    readonly contextLength: number,
    readonly backendReason: string,
  ) {}

  /** Loads a Hugging Face Llama folder (config.json, safetensors, tokenizer.json). */
  static async load(dir: string, opts: LoadOptions = {}): Promise<Model> {
    const config = await readLlamaConfig(dir);
    const tokenizer = await loadTokenizer(dir);
    const { nm, reason, contextLength } = createNative(config, opts);
    try {
      const specs = nm.tensorSpecs();
      let loaded = 0;
      for await (const t of iterateTensors(dir)) {
        if (opts.signal?.aborted) throw new CasspecError('E_ABORTED', 'model load was aborted', { cause: opts.signal.reason });
        if (config.tieWordEmbeddings && t.name === 'lm_head.weight') continue; // tied: same as embed_tokens
        try {
          await nm.setTensor(t.name, t.dtype, t.shape, t.data);
        } catch (e) {
          const err = fromNative(e);
          throw new CasspecError(err.code, `${t.file}: ${err.message}`, { cause: e });
        }
        opts.onProgress?.({ tensor: t.name, loaded: ++loaded, total: specs.length });
      }
      const ctx = await nm.createContext(1).catch((e) => Promise.reject(fromNative(e))); // checks completeness
      ctx.dispose();
      return new Model(nm, config, tokenizer, contextLength, reason);
    } catch (e) {
      nm.dispose();
      throw e;
    }
  }

  /** Random weights of any shape (a preset name like 'llama-2-7b' or a full config), for timing. */
  static async loadDummy(shape: string | LlamaConfig, opts: DummyLoadOptions = {}): Promise<Model> {
    const config = typeof shape === 'string' ? llamaPreset(shape) : shape;
    const tokenizer = opts.tokenizerDir ? await loadTokenizer(opts.tokenizerDir) : undefined;
    const { nm, reason, contextLength } = createNative(config, opts);
    try {
      await nm.fillDummy(opts.seed ?? 0).catch((e) => Promise.reject(fromNative(e)));
      return new Model(nm, config, tokenizer, contextLength, reason);
    } catch (e) {
      nm.dispose();
      throw e;
    }
  }

  get info(): NativeModelInfo {
    return this.live().info();
  }

  /** Streams a completion of `prompt` (text, or token ids). */
  generate(prompt: string | number[], opts: GenerateOptions = {}): Generation {
    return new Generation(this.run(prompt, opts));
  }

  /** Convenience: the whole completion at once. */
  complete(prompt: string | number[], opts: GenerateOptions = {}): Promise<GenerationResult> {
    return this.generate(prompt, opts).result;
  }

  encode(text: string): number[] {
    return this.requireTokenizer().encode(text);
  }

  decode(ids: number[]): string {
    return this.requireTokenizer().decode(ids);
  }

  /** Frees the weights once running generations finish. Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.nativeModel.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private live(): NativeModel {
    if (this.disposed) throw new CasspecError('E_DISPOSED', 'this model was disposed');
    return this.nativeModel;
  }

  private requireTokenizer(): TextTokenizer {
    if (!this.tokenizer) throw new CasspecError('E_TOKENIZER', 'this model has no tokenizer (pass token ids, or tokenizerDir)');
    return this.tokenizer;
  }

  private async *run(prompt: string | number[], opts: GenerateOptions): AsyncGenerator<GenerateChunk, GenerationResult> {
    const nm = this.live();
    const ids = typeof prompt === 'string' ? this.encode(prompt) : prompt;
    const maxTokens = opts.maxTokens ?? 256;
    const temperature = opts.temperature ?? 0;
    const topP = opts.topP ?? 1;
    checkOptions(ids, maxTokens, temperature, topP, this.config.vocabSize);
    if (ids.length + 1 > this.contextLength)
      throw new CasspecError(
        'E_CONTEXT_FULL',
        `the prompt has ${ids.length} tokens but the context holds ${this.contextLength} (contextLength option / max_position_embeddings)`,
      );
    const strategy =
      typeof opts.strategy === 'object'
        ? opts.strategy
        : createStrategy(opts.strategy ?? DEFAULT_STRATEGY, {
            numLayers: this.config.numLayers,
            vocabSize: this.config.vocabSize,
            model: nm,
          });
    // Room for the prompt, the generation and one full draft tree.
    const capacity = Math.min(this.contextLength, ids.length + maxTokens + 80);
    const ctx = await nm.createContext(capacity).catch((e) => Promise.reject(fromNative(e)));
    const tok = this.tokenizer;
    try {
      return yield* generationLoop({
        ctx,
        numLayers: this.config.numLayers,
        prompt: ids,
        maxTokens,
        eos: new Set(opts.ignoreEos ? [] : this.config.eosTokenIds),
        temperature,
        topP,
        seed: opts.seed ?? 0,
        strategy,
        signal: opts.signal,
        decode: () => (tok ? tok.createDecoder() : { push: () => '', flush: () => '' }),
      });
    } finally {
      ctx.dispose();
    }
  }
}

function checkOptions(ids: number[], maxTokens: number, temperature: number, topP: number, vocab: number): void {
  const bad = (m: string) => new CasspecError('E_INVALID_ARG', m);
  if (ids.length === 0) throw bad('the prompt is empty');
  for (const t of ids) if (!Number.isInteger(t) || t < 0 || t >= vocab) throw bad(`prompt token ${t} is outside the vocabulary (0..${vocab - 1})`);
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw bad(`maxTokens must be a non-negative integer, got ${maxTokens}`);
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw bad(`temperature must be >= 0, got ${temperature}`);
  if (!(topP > 0 && topP <= 1)) throw bad(`topP must be in (0, 1], got ${topP}`);
}

function createNative(config: LlamaConfig, opts: LoadOptions): { nm: NativeModel; reason: string; contextLength: number } {
  const addon = native();
  const choice = opts.backend ?? 'auto';
  if (!['auto', 'cpu', 'cuda'].includes(choice)) throw new CasspecError('E_INVALID_ARG', `backend must be auto, cpu or cuda, got '${choice}'`);
  const cuda = addon.cudaStatus();
  let backend: 'cpu' | 'cuda';
  let reason: string;
  if (choice === 'cpu') {
    backend = 'cpu';
    reason = 'cpu backend requested';
  } else if (cuda.usable) {
    backend = 'cuda';
    reason = `CUDA usable: ${cuda.reason}`;
  } else if (choice === 'cuda') {
    throw new CasspecError('E_BACKEND', `the CUDA backend is not usable: ${cuda.reason}`);
  } else {
    backend = 'cpu';
    reason = `CUDA not usable (${cuda.reason}); using the CPU reference backend`;
  }
  const contextLength = opts.contextLength ?? Math.min(config.maxPositions, 4096);
  if (!Number.isInteger(contextLength) || contextLength < 2 || contextLength > config.maxPositions)
    throw new CasspecError('E_INVALID_ARG', `contextLength must be an integer in 2..${config.maxPositions} (max_position_embeddings)`);
  const weightDType = opts.weightDType ?? (config.torchDtype === 'F16' ? 'F16' : 'BF16');
  try {
    const nm = addon.createModel(
      nativeConfigOf(config),
      { backend, threads: opts.threads, device: opts.device, weightDType },
    );
    return { nm, reason, contextLength };
  } catch (e) {
    throw fromNative(e);
  }
}
