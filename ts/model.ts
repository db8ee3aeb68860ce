// The public model object: load from a Hugging Face folder (or dummy weights), generate text.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CasspecError, fromNative, type ErrorCode } from './errors.js';
import { native, type ForwardOutput, type ForwardRequest, type NativeContext, type NativeModel, type NativeModelInfo, type TensorDType } from './native.js';
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
  /**
   * 'int8' also keeps an int8 copy of every layer's projection weights (about half the 16-bit
   * weights on the GPU, a quarter of the fp32 ones on the CPU; see info.quantBytes), which the
   * quantized draft variant `q1` runs on. 'none' (default): no copy, and `q1` is dropped.
   */
  draftQuant?: 'int8' | 'none';
  signal?: AbortSignal;
  onProgress?: (p: LoadProgress) => void;
  /**
   * Generations that may hold a KV cache and advance at once (default 8). Their native operations
   * are interleaved one at a time in FIFO order (see "Concurrency" in the README); later
   * generate() calls wait, in arrival order, for a running one to finish.
   */
  maxConcurrent?: number;
  /** Generations that may wait for a slot (default: no limit); beyond it generate() fails with E_BUSY. */
  maxQueued?: number;
  /**
   * KV-cache bytes this model's contexts may hold at once (default: no limit). A generation whose
   * own cache (min(contextLength, prompt + maxTokens + 80) slots x info.kvBytesPerSlot) exceeds it
   * fails with E_OOM; one that fits once others finish waits for them.
   */
  kvBudgetBytes?: number;
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

/** How a model's generations are being scheduled right now (see LoadOptions.maxConcurrent). */
export interface SchedulingState {
  /** Generations holding a KV cache (at most maxConcurrent). */
  activeGenerations: number;
  /** Generations waiting for a slot or for KV budget. */
  queuedGenerations: number;
  /** KV-cache bytes held by this model's contexts (generations and strategy scratch contexts). */
  kvBytesInUse: number;
  kvBudgetBytes: number;
  maxConcurrent: number;
}

export class Model {
  private disposed = false;
  private readonly sched: Scheduler;
  /** What strategies see as the model: native work goes through the scheduler. */
  private readonly view: NativeModel;

  private constructor(
    private readonly nativeModel: NativeModel,
    readonly config: LlamaConfig,
    readonly tokenizer: TextTokenizer | undefined,
    readonly contextLength: number,
    readonly backendReason: string,
    limits: Limits,
  ) {
    this.sched = new Scheduler(limits, nativeModel.info().kvBytesPerSlot);
    this.view = new ScheduledModel(() => this.live(), this.sched);
  }

  /** Loads a Hugging Face Llama folder (config.json, safetensors, tokenizer.json). */
  static async load(dir: string, opts: LoadOptions = {}): Promise<Model> {
    checkLoadOptions(opts);
    await checkModelFiles(dir, MODEL_FILES);
    const config = await readLlamaConfig(dir);
    const tokenizer = await loadTokenizer(dir);
    if (opts.signal?.aborted) throw new CasspecError('E_ABORTED', 'model load was aborted', { cause: opts.signal.reason });
    const { nm, reason, contextLength, limits } = createNative(config, opts);
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
      const ctx = await nativeCall(() => nm.createContext(1)); // checks completeness
      ctx.dispose();
      return new Model(nm, config, tokenizer, contextLength, reason, limits);
    } catch (e) {
      nm.dispose();
      throw e;
    }
  }

  /** Random weights of any shape (a preset name like 'llama-2-7b' or a full config), for timing. */
  static async loadDummy(shape: string | LlamaConfig, opts: DummyLoadOptions = {}): Promise<Model> {
    checkLoadOptions(opts);
    if (typeof shape !== 'string' && (shape === null || typeof shape !== 'object' || Array.isArray(shape)))
      throw new CasspecError('E_INVALID_ARG', 'loadDummy needs a preset name or a LlamaConfig object');
    const config = typeof shape === 'string' ? llamaPreset(shape) : { ...shape, eosTokenIds: Array.isArray(shape.eosTokenIds) ? [...shape.eosTokenIds] : [] };
    if (opts.tokenizerDir !== undefined) await checkModelFiles(opts.tokenizerDir, TOKENIZER_FILES);
    const tokenizer = opts.tokenizerDir ? await loadTokenizer(opts.tokenizerDir) : undefined;
    const { nm, reason, contextLength, limits } = createNative(config, opts);
    try {
      await nativeCall(() => nm.fillDummy(opts.seed ?? 0));
      return new Model(nm, config, tokenizer, contextLength, reason, limits);
    } catch (e) {
      nm.dispose();
      throw e;
    }
  }

  get info(): NativeModelInfo {
    return this.live().info();
  }

  /** Generations running and waiting, and the KV memory they hold. */
  get scheduling(): SchedulingState {
    return this.sched.state();
  }

  /**
   * Streams a completion of `prompt` (text, or token ids). Each generation has its own KV cache;
   * concurrent ones are interleaved one native operation at a time (up to maxConcurrent, then
   * queued). Rejects with E_ABORTED when opts.signal aborts (between native operations, releasing
   * the cache at once), and with E_DISPOSED when the model is disposed meanwhile.
   */
  generate(prompt: string | number[], opts: GenerateOptions = {}): Generation {
    const cleanup: Cleanup = {};
    const gen = new Generation(this.run(prompt, opts, cleanup));
    // A Generation dropped mid-stream (never finished, returned or aborted) gives its slot and KV
    // cache back when it is garbage collected.
    abandoned.register(gen, cleanup, cleanup);
    return gen;
  }

  /** Convenience: the whole completion at once. */
  complete(prompt: string | number[], opts: GenerateOptions = {}): Promise<GenerationResult> {
    return this.generate(prompt, opts).result;
  }

  encode(text: string): number[] {
    const tok = this.requireTokenizer();
    if (typeof text !== 'string') throw new CasspecError('E_INVALID_ARG', 'encode expects a string');
    return tokenizerCall(() => tok.encode(text));
  }

  decode(ids: number[]): string {
    const tok = this.requireTokenizer();
    if (!Array.isArray(ids) || !ids.every((t) => Number.isSafeInteger(t) && t >= 0))
      throw new CasspecError('E_INVALID_ARG', 'decode expects an array of token ids');
    if (ids.length === 0) return ''; // tokenizers.js refuses an empty list
    return tokenizerCall(() => tok.decode(ids));
  }

  /**
   * Releases the model. Safe to call twice, and while generations run: waiting generations and
   * every later call reject with E_DISPOSED; running ones reject with E_DISPOSED at their next
   * native operation (the one in flight completes first: it owns what it uses). Memory is freed
   * as soon as no operation needs it any more.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.sched.close(new CasspecError('E_DISPOSED', 'this model was disposed'));
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

  private async *run(prompt: string | number[], opts: GenerateOptions, cleanup: Cleanup): AsyncGenerator<GenerateChunk, GenerationResult> {
    this.live();
    if (opts === null || typeof opts !== 'object') throw new CasspecError('E_INVALID_ARG', 'generate options must be an object');
    const signal = checkSignal(opts.signal);
    if (signal?.aborted) throw abortError(signal);
    let ids: number[];
    if (typeof prompt === 'string') ids = this.encode(prompt);
    else if (Array.isArray(prompt)) ids = prompt;
    else throw new CasspecError('E_INVALID_ARG', 'the prompt must be a string or an array of token ids');
    const maxTokens = opts.maxTokens ?? 256;
    const temperature = opts.temperature ?? 0;
    const topP = opts.topP ?? 1;
    const seed = opts.seed ?? 0;
    checkOptions(ids, maxTokens, temperature, topP, this.config.vocabSize);
    if (!Number.isSafeInteger(seed)) throw new CasspecError('E_INVALID_ARG', `seed must be a safe integer, got ${seed}`);
    if (ids.length + 1 > this.contextLength)
      throw new CasspecError(
        'E_CONTEXT_FULL',
        `the prompt has ${ids.length} tokens but the context holds ${this.contextLength} (contextLength option / max_position_embeddings)`,
      );
    const strategy = this.strategyFor(opts.strategy);
    // Room for the prompt, the generation and one full draft tree.
    const capacity = Math.min(this.contextLength, ids.length + maxTokens + 80);
    const lease = await this.sched.admit(capacity, signal);
    let ctx: ScheduledContext | undefined;
    const release = () => {
      ctx?.dispose();
      lease.release();
    };
    cleanup.run = release;
    signal?.addEventListener('abort', release, { once: true });
    const tok = this.tokenizer;
    try {
      ctx = await this.sched.createContext(this.live(), capacity, signal);
      return yield* generationLoop({
        ctx,
        numLayers: this.config.numLayers,
        prompt: ids,
        maxTokens,
        eos: new Set(opts.ignoreEos ? [] : this.config.eosTokenIds),
        temperature,
        topP,
        seed,
        strategy,
        signal,
        decode: () => {
          if (!tok) return { push: () => '', flush: () => '' };
          const d = tok.createDecoder();
          let pushed = false; // flushing an empty stream would decode [], which tokenizers.js refuses
          return {
            push: (id: number) => {
              pushed = true;
              return tokenizerCall(() => d.push(id));
            },
            flush: () => (pushed ? tokenizerCall(() => d.flush()) : ''),
          };
        },
      });
    } catch (e) {
      throw asCasspecError(e, signal);
    } finally {
      signal?.removeEventListener('abort', release);
      release();
      cleanup.run = undefined;
      abandoned.unregister(cleanup);
    }
  }

  private strategyFor(s: GenerateOptions['strategy']): Strategy {
    if (s !== undefined && typeof s === 'object' && s !== null) {
      if (typeof s.draft !== 'function' || typeof s.name !== 'string')
        throw new CasspecError('E_INVALID_ARG', 'a strategy object needs a name and a draft() method');
      return s;
    }
    if (s !== undefined && typeof s !== 'string') throw new CasspecError('E_INVALID_ARG', 'strategy must be a name or a Strategy object');
    return createStrategy(s ?? DEFAULT_STRATEGY, {
      numLayers: this.config.numLayers,
      vocabSize: this.config.vocabSize,
      model: this.view,
    });
  }
}

/** Tokenizer work: its failures (a hostile tokenizer.json can make encode or decode throw) are E_TOKENIZER. */
function tokenizerCall<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof CasspecError) throw e;
    throw new CasspecError('E_TOKENIZER', `the tokenizer failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}

const MODEL_FILES: [string, ErrorCode][] = [
  ['config.json', 'E_CONFIG'],
  ['generation_config.json', 'E_CONFIG'],
  ['tokenizer.json', 'E_TOKENIZER'],
  ['tokenizer_config.json', 'E_TOKENIZER'],
  ['model.safetensors', 'E_SAFETENSORS'],
  ['model.safetensors.index.json', 'E_SAFETENSORS'],
];
const TOKENIZER_FILES = MODEL_FILES.filter(([n]) => n.startsWith('tokenizer') || n.endsWith('config.json'));

/**
 * Refuses model files that exist but are not regular files (after symlinks) before any loader
 * opens them: opening a FIFO blocks a libuv thread until someone writes to it, and a device like
 * /dev/zero never ends.
 */
async function checkModelFiles(dir: string, files: [string, ErrorCode][]): Promise<void> {
  if (typeof dir !== 'string' || dir.length === 0 || dir.includes('\0'))
    throw new CasspecError('E_INVALID_ARG', 'the model folder must be a non-empty path string');
  for (const [name, code] of files) {
    const path = join(dir, name);
    let st;
    try {
      st = await stat(path);
    } catch {
      continue; // absent or unreadable: the loader reports it in its own words
    }
    if (!st.isFile()) throw new CasspecError(code, `${path}: is not a regular file`);
  }
}

function checkOptions(ids: number[], maxTokens: number, temperature: number, topP: number, vocab: number): void {
  const bad = (m: string) => new CasspecError('E_INVALID_ARG', m);
  if (ids.length === 0) throw bad('the prompt is empty');
  if (ids.length > 0x7fffffff) throw bad('the prompt is too long');
  for (const t of ids) if (!Number.isInteger(t) || t < 0 || t >= vocab) throw bad(`prompt token ${t} is outside the vocabulary (0..${vocab - 1})`);
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw bad(`maxTokens must be a non-negative integer, got ${maxTokens}`);
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw bad(`temperature must be >= 0, got ${temperature}`);
  if (!(topP > 0 && topP <= 1)) throw bad(`topP must be in (0, 1], got ${topP}`);
}

/** Native calls may throw synchronously (argument checks) or reject: either way a CasspecError. */
async function nativeCall<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw fromNative(e);
  }
}

function checkLoadOptions(opts: LoadOptions): void {
  if (opts === null || typeof opts !== 'object') throw new CasspecError('E_INVALID_ARG', 'load options must be an object');
  if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') throw new CasspecError('E_INVALID_ARG', 'onProgress must be a function');
  checkSignal(opts.signal);
  checkLimits(opts);
  if (opts.draftQuant !== undefined && opts.draftQuant !== 'int8' && opts.draftQuant !== 'none')
    throw new CasspecError('E_INVALID_ARG', `draftQuant must be 'int8' or 'none', got '${String(opts.draftQuant)}'`);
}

function createNative(config: LlamaConfig, opts: LoadOptions): { nm: NativeModel; reason: string; contextLength: number; limits: Limits } {
  const limits = checkLimits(opts);
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
      { backend, threads: opts.threads, device: opts.device, weightDType, quantWeights: opts.draftQuant === 'int8' ? 1 : 0 },
    );
    return { nm, reason, contextLength, limits };
  } catch (e) {
    throw fromNative(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Scheduling: how concurrent generate() calls share one native model.
//
// - Native operations (forward, commit, truncate, context creation and release) of one model run
//   one at a time, in FIFO order. A generation has at most one operation queued, so concurrent
//   generations advance round-robin, one forward pass each. At most one libuv thread per model is
//   ever busy with model work; the rest of the pool stays free for fs, dns, zlib and crypto.
// - Admission: up to maxConcurrent generations hold a KV cache at once, within kvBudgetBytes;
//   the others wait in arrival order (maxQueued of them, then E_BUSY).
// - Releasing a context is itself a queued operation, so native memory is never freed while a
//   forward pass of the same model runs, and it is freed before any later allocation.

interface Limits {
  maxConcurrent: number;
  maxQueued: number;
  kvBudgetBytes: number;
}

interface Cleanup {
  run?: () => void;
}

const abandoned = new FinalizationRegistry<Cleanup>((c) => c.run?.());

function checkLimits(opts: LoadOptions): Limits {
  const count = (v: number | undefined, name: string, dflt: number, min: number): number => {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !(v === Infinity || (Number.isSafeInteger(v) && v >= min)))
      throw new CasspecError('E_INVALID_ARG', `${name} must be an integer >= ${min} (or Infinity), got ${String(v)}`);
    return v;
  };
  return {
    maxConcurrent: count(opts.maxConcurrent, 'maxConcurrent', 8, 1),
    maxQueued: count(opts.maxQueued, 'maxQueued', Infinity, 0),
    kvBudgetBytes: count(opts.kvBudgetBytes, 'kvBudgetBytes', Infinity, 1),
  };
}

function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  const s = signal as AbortSignal;
  if (s === null || typeof s !== 'object' || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function')
    throw new CasspecError('E_INVALID_ARG', 'signal must be an AbortSignal');
  return s;
}

function abortError(signal: AbortSignal): CasspecError {
  return new CasspecError('E_ABORTED', 'generation was aborted', { cause: signal.reason });
}

/** Every failure out of generate() is a CasspecError; an abort wins over what it interrupted. */
function asCasspecError(e: unknown, signal: AbortSignal | undefined): CasspecError {
  if (e instanceof CasspecError) {
    if (signal?.aborted && (e.code === 'E_DISPOSED' || e.code === 'E_BUSY')) return abortError(signal);
    return e;
  }
  if (signal?.aborted) return abortError(signal);
  const err = e as { code?: unknown; message?: unknown };
  if (typeof err?.code === 'string' && err.code.startsWith('E_')) return fromNative(e);
  return new CasspecError('E_INTERNAL', `generation failed: ${typeof err?.message === 'string' ? err.message : String(e)}`, { cause: e });
}

interface QueuedOp {
  run: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  /** Internal operations (releases) still run after the model is closed. */
  internal: boolean;
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface Waiter {
  bytes: number;
  grant: (l: Lease) => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface Lease {
  release(): void;
}

class Scheduler {
  private readonly ops: QueuedOp[] = [];
  private running = false;
  private closedWith?: CasspecError;
  private readonly waiters: Waiter[] = [];
  private active = 0;
  private kvUsed = 0;
  readonly contexts = new Set<ScheduledContext>();

  constructor(
    private readonly limits: Limits,
    readonly kvBytesPerSlot: number,
  ) {}

  get closedError(): CasspecError | undefined {
    return this.closedWith;
  }

  state(): SchedulingState {
    return {
      activeGenerations: this.active,
      queuedGenerations: this.waiters.length,
      kvBytesInUse: this.kvUsed,
      kvBudgetBytes: this.limits.kvBudgetBytes,
      maxConcurrent: this.limits.maxConcurrent,
    };
  }

  /** Runs `run` once every native operation queued before it has finished. */
  exec<T>(run: () => Promise<T>, signal?: AbortSignal, internal = false): Promise<T> {
    if (this.closedWith && !internal) return Promise.reject(this.closedWith);
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<T>((resolve, reject) => {
      const op: QueuedOp = { run, resolve: resolve as (v: unknown) => void, reject, internal, signal };
      if (signal) {
        op.onAbort = () => {
          const i = this.ops.indexOf(op);
          if (i >= 0) {
            this.ops.splice(i, 1);
            reject(abortError(signal));
          }
        };
        signal.addEventListener('abort', op.onAbort, { once: true });
      }
      this.ops.push(op);
      this.pump();
    });
  }

  private pump(): void {
    if (this.running) return;
    const op = this.ops.shift();
    if (!op) return;
    if (op.onAbort) op.signal!.removeEventListener('abort', op.onAbort);
    this.running = true;
    let p: Promise<unknown>;
    try {
      p = op.run();
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (v) => {
        this.running = false;
        op.resolve(v);
        this.pump();
      },
      (e) => {
        this.running = false;
        op.reject(e);
        this.pump();
      },
    );
  }

  /** A generation's slot and KV budget, waiting in FIFO order when neither is free. */
  admit(capacity: number, signal?: AbortSignal): Promise<Lease> {
    const bytes = capacity * this.kvBytesPerSlot;
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (bytes > this.limits.kvBudgetBytes)
      return Promise.reject(
        new CasspecError(
          'E_OOM',
          `this generation needs a ${bytes}-byte KV cache (${capacity} slots) but kvBudgetBytes is ${this.limits.kvBudgetBytes}; lower maxTokens or raise the budget`,
        ),
      );
    if (this.waiters.length === 0 && this.fits(bytes)) return Promise.resolve(this.grant(bytes));
    if (this.waiters.length >= this.limits.maxQueued)
      return Promise.reject(
        new CasspecError('E_BUSY', `${this.active} generations are running and ${this.waiters.length} waiting (maxQueued); try again later`),
      );
    return new Promise<Lease>((grant, reject) => {
      const w: Waiter = { bytes, grant, reject, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) {
            this.waiters.splice(i, 1);
            reject(abortError(signal));
            this.admitWaiting(); // the head may have changed
          }
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.waiters.push(w);
    });
  }

  /** KV budget for a strategy's scratch context: granted at once or E_OOM (never waits). */
  reserve(capacity: number): () => void {
    if (this.closedWith) throw this.closedWith;
    if (!Number.isSafeInteger(capacity) || capacity < 1)
      throw new CasspecError('E_INVALID_ARG', `context capacity must be a positive integer, got ${String(capacity)}`);
    const bytes = capacity * this.kvBytesPerSlot;
    if (this.kvUsed + bytes > this.limits.kvBudgetBytes)
      throw new CasspecError(
        'E_OOM',
        `a ${bytes}-byte scratch KV cache does not fit in kvBudgetBytes (${this.kvUsed} of ${this.limits.kvBudgetBytes} in use)`,
      );
    this.kvUsed += bytes;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.kvUsed -= bytes;
      this.admitWaiting();
    };
  }

  /** Creates a context through the queue; it is released (through the queue) by dispose(). */
  async createContext(nm: NativeModel, capacity: number, signal?: AbortSignal, onDispose?: () => void): Promise<ScheduledContext> {
    const ctx = await this.exec(async () => {
      try {
        return new ScheduledContext(this, await nm.createContext(capacity), signal, onDispose);
      } catch (e) {
        throw fromNative(e);
      }
    }, signal);
    if (this.closedWith || signal?.aborted) {
      ctx.dispose();
      throw this.closedWith ?? abortError(signal!);
    }
    return ctx;
  }

  private fits(bytes: number): boolean {
    return this.active < this.limits.maxConcurrent && this.kvUsed + bytes <= this.limits.kvBudgetBytes;
  }

  private grant(bytes: number): Lease {
    this.active++;
    this.kvUsed += bytes;
    let done = false;
    return {
      release: () => {
        if (done) return;
        done = true;
        this.active--;
        this.kvUsed -= bytes;
        this.admitWaiting();
      },
    };
  }

  private admitWaiting(): void {
    while (!this.closedWith && this.waiters.length > 0 && this.fits(this.waiters[0].bytes)) {
      const w = this.waiters.shift()!;
      if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
      w.grant(this.grant(w.bytes));
    }
  }

  /** After dispose: nothing new starts, waiters reject, contexts are released (through the queue). */
  close(err: CasspecError): void {
    if (this.closedWith) return;
    this.closedWith = err;
    for (const op of this.ops.splice(0)) {
      if (op.internal) {
        this.ops.push(op);
        continue;
      }
      if (op.onAbort) op.signal!.removeEventListener('abort', op.onAbort);
      op.reject(err);
    }
    for (const w of this.waiters.splice(0)) {
      if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
      w.reject(err);
    }
    for (const c of [...this.contexts]) c.dispose();
  }
}

/** A native context whose operations go through its model's queue. */
class ScheduledContext implements NativeContext {
  private inner: NativeContext | undefined;
  private disposed = false;
  private lastCommitted = 0;
  readonly capacity: number;

  constructor(
    private readonly sched: Scheduler,
    inner: NativeContext,
    private readonly signal?: AbortSignal,
    private readonly onDispose?: () => void,
  ) {
    this.inner = inner;
    this.capacity = inner.capacity;
    sched.contexts.add(this);
  }

  get committed(): number {
    return this.inner ? this.inner.committed : this.lastCommitted;
  }

  forward(req: ForwardRequest): Promise<ForwardOutput> {
    return this.op((c) => c.forward(req));
  }

  commit(path: Int32Array): Promise<void> {
    return this.op((c) => c.commit(path));
  }

  truncate(n: number): Promise<void> {
    return this.op((c) => c.truncate(n));
  }

  /** Idempotent; the native cache is freed when the queue reaches the release. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.sched.contexts.delete(this);
    this.onDispose?.();
    void this.sched.exec(
      async () => {
        const c = this.inner;
        if (!c) return;
        this.lastCommitted = c.committed;
        this.inner = undefined;
        c.dispose();
      },
      undefined,
      true,
    );
  }

  private op<T>(f: (c: NativeContext) => Promise<T>): Promise<T> {
    if (this.signal?.aborted) return Promise.reject(abortError(this.signal));
    if (this.disposed) return Promise.reject(this.sched.closedError ?? new CasspecError('E_DISPOSED', 'this context was disposed'));
    return this.sched.exec(async () => {
      if (this.disposed || !this.inner) throw this.sched.closedError ?? new CasspecError('E_DISPOSED', 'this context was disposed');
      try {
        return await f(this.inner);
      } catch (e) {
        throw fromNative(e);
      }
    }, this.signal);
  }
}

/** The model as strategies see it: scratch contexts are budgeted and scheduled like any other. */
class ScheduledModel implements NativeModel {
  constructor(
    private readonly live: () => NativeModel,
    private readonly sched: Scheduler,
  ) {}

  tensorSpecs(): { name: string; shape: number[] }[] {
    return this.live().tensorSpecs();
  }

  info(): NativeModelInfo {
    return this.live().info();
  }

  setTensor(name: string, dtype: TensorDType, shape: number[], data: Uint8Array): Promise<void> {
    return this.sched.exec(() => nativeCall(() => this.live().setTensor(name, dtype, shape, data)));
  }

  fillDummy(seed: number): Promise<void> {
    return this.sched.exec(() => nativeCall(() => this.live().fillDummy(seed)));
  }

  async createContext(capacity: number): Promise<NativeContext> {
    const nm = this.live();
    const release = this.sched.reserve(capacity);
    try {
      return await this.sched.createContext(nm, capacity, undefined, release);
    } catch (e) {
      release();
      throw e;
    }
  }

  /** The Model owns the native model: strategies cannot dispose it. */
  dispose(): void {}
}
