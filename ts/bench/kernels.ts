// Kernel-level benchmark through the public native API: the time of one forward pass of a chain
// of n pending tokens on top of a prefilled cache, for n = 1..64 and cache lengths 512 / 2048
// (the cost of verifying n draft tokens vs decoding one), plus plain decoding tokens/s
// (forward one token, commit it, repeat). Weights are dummy values of the model's shape: timing
// does not depend on their values. With `quant` (a quant mode, e.g. 1 = int8 W8A8), every chain is
// also timed in that mode, interleaved with the full-precision repeats.
import { CasspecError, fromNative } from '../errors.js';
import { native, type NativeContext, type NativeModel } from '../native.js';
import { nativeConfigOf, type LlamaConfig } from '../loader/config.js';
import { Rng } from '../decode/rng.js';
import { median } from './run.js';
import { textTable } from './report.js';

export const DEFAULT_KERNEL_NS = [1, 2, 4, 8, 16, 32, 64];
export const DEFAULT_KERNEL_CACHES = [512, 2048];
/** Slots above the cache: the largest chain, and the plain-decoding run. */
export const KERNEL_HEADROOM = 64;

export interface KernelOptions {
  ns?: number[];
  caches?: number[];
  warmup?: number;
  repeats?: number;
  /** Tokens decoded for the plain-decoding rate (default: the headroom above the cache - 1). */
  decodeTokens?: number;
  /** Also time each chain in this quant mode (the model must hold its weights: createDummyNativeModel's quantWeights). */
  quant?: number;
  seed?: number;
  signal?: AbortSignal;
  onProgress?: (msg: string) => void;
}

export interface KernelForwardRow {
  cache: number;
  n: number;
  /** Median ms per forward over the repeats. */
  ms: number;
  minMs: number;
  /** ms / the n=1 median at the same cache length (verification cost relative to one decode step). */
  relToN1: number | null;
  /** With KernelOptions.quant: median ms of the same forward in that mode. */
  quantMs?: number;
}

export interface KernelDecodeRow {
  cache: number;
  tokens: number;
  ms: number;
  tokensPerSecond: number;
}

export interface KernelResult {
  forward: KernelForwardRow[];
  decode: KernelDecodeRow[];
  /** Cache lengths left out because they do not fit max_position_embeddings. */
  skippedCaches: number[];
  protocol: { warmup: number; repeats: number; ns: number[]; caches: number[]; quant?: number };
}

/** Creates a native model of `config`'s shape filled with dummy weights, on the chosen backend. */
export async function createDummyNativeModel(
  config: LlamaConfig,
  opts: { backend?: 'auto' | 'cpu' | 'cuda'; seed?: number; threads?: number; device?: number; quantWeights?: number },
): Promise<{ nm: NativeModel; reason: string }> {
  const addon = native();
  const choice = opts.backend ?? 'auto';
  const cuda = addon.cudaStatus();
  let backend: 'cpu' | 'cuda';
  let reason: string;
  if (choice === 'cpu') [backend, reason] = ['cpu', 'cpu backend requested'];
  else if (cuda.usable) [backend, reason] = ['cuda', `CUDA usable: ${cuda.reason}`];
  else if (choice === 'cuda') throw new CasspecError('E_BACKEND', `the CUDA backend is not usable: ${cuda.reason}`);
  else [backend, reason] = ['cpu', `CUDA not usable (${cuda.reason}); using the CPU reference backend`];
  const weightDType = config.torchDtype === 'F16' ? 'F16' : 'BF16';
  let nm: NativeModel;
  try {
    nm = addon.createModel(nativeConfigOf(config), { backend, threads: opts.threads, device: opts.device, weightDType, quantWeights: opts.quantWeights });
  } catch (e) {
    throw fromNative(e);
  }
  try {
    await nm.fillDummy(opts.seed ?? 0);
  } catch (e) {
    nm.dispose();
    throw fromNative(e);
  }
  return { nm, reason };
}

const call = async <T>(f: () => Promise<T>): Promise<T> => {
  try {
    return await f();
  } catch (e) {
    throw fromNative(e);
  }
};

/** A chain of n tokens at slots base..base+n-1, each the parent of the next. */
function chain(tokens: number[], base: number) {
  const n = tokens.length;
  return {
    tokens: Int32Array.from(tokens),
    slots: Int32Array.from({ length: n }, (_, i) => base + i),
    parents: Int32Array.from({ length: n }, (_, i) => (i === 0 ? -1 : base + i - 1)),
  };
}

async function prefill(ctx: NativeContext, tokens: number[], chunk = 512): Promise<number> {
  let last = 0;
  for (let i = 0; i < tokens.length; i += chunk) {
    const part = tokens.slice(i, i + chunk);
    const c = chain(part, ctx.committed);
    const out = await call(() => ctx.forward({ ...c, outRows: Int32Array.of(part.length - 1) }));
    await call(() => ctx.commit(c.slots));
    last = out.argmax[0];
  }
  return last;
}

export async function runKernelBench(nm: NativeModel, config: LlamaConfig, opts: KernelOptions = {}): Promise<KernelResult> {
  const ns = opts.ns ?? DEFAULT_KERNEL_NS;
  const caches = opts.caches ?? DEFAULT_KERNEL_CACHES;
  const warmup = opts.warmup ?? 3;
  const repeats = opts.repeats ?? 10;
  if (ns.some((n) => !Number.isInteger(n) || n < 1)) throw new CasspecError('E_INVALID_ARG', 'kernel chain lengths must be integers >= 1');
  if (caches.some((c) => !Number.isInteger(c) || c < 1)) throw new CasspecError('E_INVALID_ARG', 'cache lengths must be integers >= 1');
  if (!Number.isInteger(repeats) || repeats < 1) throw new CasspecError('E_INVALID_ARG', 'repeats must be >= 1');
  const headroom = Math.max(KERNEL_HEADROOM, ...ns, (opts.decodeTokens ?? 0) + 1);
  const decodeTokens = opts.decodeTokens ?? headroom - 1;
  const rng = new Rng(opts.seed ?? 0);
  const randomTokens = (n: number) => Array.from({ length: n }, () => Math.floor(rng.uniform() * config.vocabSize));
  const checkAbort = () => {
    if (opts.signal?.aborted) throw new CasspecError('E_ABORTED', 'the benchmark was aborted', { cause: opts.signal.reason });
  };

  const forward: KernelForwardRow[] = [];
  const decode: KernelDecodeRow[] = [];
  const skippedCaches: number[] = [];
  for (const cache of caches) {
    if (cache + headroom > config.maxPositions) {
      skippedCaches.push(cache);
      continue;
    }
    const ctx = await call(() => nm.createContext(cache + headroom));
    try {
      opts.onProgress?.(`cache ${cache}: prefill`);
      let next = await prefill(ctx, randomTokens(cache));
      let n1 = NaN;
      for (const n of ns) {
        checkAbort();
        opts.onProgress?.(`cache ${cache}: forward of ${n} token${n === 1 ? '' : 's'}`);
        const c = chain(randomTokens(n), cache);
        // Re-forwarding the same pending slots with the same parents is allowed: no truncate needed
        // between repeats; truncate(cache) afterwards drops them.
        const cq = { ...c, quant: opts.quant };
        for (let w = 0; w < warmup; w++) {
          await call(() => ctx.forward(c));
          if (opts.quant !== undefined) await call(() => ctx.forward(cq));
        }
        const times: number[] = [];
        const quantTimes: number[] = [];
        for (let r = 0; r < repeats; r++) {
          let t0 = performance.now();
          await call(() => ctx.forward(c));
          times.push(performance.now() - t0);
          if (opts.quant === undefined) continue;
          t0 = performance.now();
          await call(() => ctx.forward(cq));
          quantTimes.push(performance.now() - t0);
        }
        await call(() => ctx.truncate(cache));
        const ms = median(times);
        if (n === 1) n1 = ms;
        const row: KernelForwardRow = { cache, n, ms, minMs: Math.min(...times), relToN1: Number.isFinite(n1) ? ms / n1 : null };
        if (opts.quant !== undefined) row.quantMs = median(quantTimes);
        forward.push(row);
      }

      // Plain decoding: forward the pending token, commit it, feed its argmax back.
      checkAbort();
      opts.onProgress?.(`cache ${cache}: plain decoding of ${decodeTokens} tokens`);
      for (let w = 0; w < warmup; w++) {
        const c = chain([next], cache);
        await call(() => ctx.forward(c));
      }
      await call(() => ctx.truncate(cache));
      const t0 = performance.now();
      for (let i = 0; i < decodeTokens; i++) {
        const c = chain([next], ctx.committed);
        const out = await call(() => ctx.forward(c));
        await call(() => ctx.commit(c.slots));
        next = out.argmax[0];
      }
      const ms = performance.now() - t0;
      decode.push({ cache, tokens: decodeTokens, ms, tokensPerSecond: (decodeTokens * 1000) / ms });
    } finally {
      ctx.dispose();
    }
  }
  return { forward, decode, skippedCaches, protocol: { warmup, repeats, ns, caches, quant: opts.quant } };
}

/** Table: one row per n, per cache length the median ms, µs per token and cost relative to n=1. */
export function formatKernelReport(res: KernelResult, title: string): string {
  const caches = res.protocol.caches.filter((c) => !res.skippedCaches.includes(c));
  const header = ['n'];
  const right = [true];
  const q = res.protocol.quant;
  for (const c of caches) {
    header.push(`cache ${c}: ms`, 'us/token', 'x n=1');
    right.push(true, true, true);
    if (q !== undefined) {
      header.push(`quant ${q} ms`, `q${q}/full`);
      right.push(true, true);
    }
  }
  const rows = res.protocol.ns.map((n) => {
    const cells = [String(n)];
    for (const c of caches) {
      const r = res.forward.find((x) => x.cache === c && x.n === n);
      cells.push(r ? r.ms.toFixed(3) : '-', r ? ((r.ms * 1000) / n).toFixed(1) : '-', r?.relToN1 != null ? r.relToN1.toFixed(2) : '-');
      if (q !== undefined) cells.push(r?.quantMs !== undefined ? r.quantMs.toFixed(3) : '-', r?.quantMs !== undefined ? (r.quantMs / r.ms).toFixed(2) : '-');
    }
    return cells;
  });
  const out = [
    title,
    `forward of a chain of n pending tokens over a prefilled cache: median of ${res.protocol.repeats} after ${res.protocol.warmup} warm-up (device-synchronised)`,
    '',
    textTable(header, rows, right),
    '',
    textTable(
      ['cache', 'plain decode tok/s', 'ms/token'],
      res.decode.map((d) => [String(d.cache), d.tokensPerSecond.toFixed(1), (d.ms / d.tokens).toFixed(3)]),
      [true, true, true],
    ),
    `plain decoding: forward 1 token + commit, ${res.decode[0]?.tokens ?? 0} tokens after the cache (native loop, no draft)`,
  ];
  if (res.skippedCaches.length) out.push(`skipped cache lengths (beyond max_position_embeddings): ${res.skippedCaches.join(', ')}`);
  return out.join('\n') + '\n';
}
