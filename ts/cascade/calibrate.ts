// Latency calibration: a few timed passes of the full model and of draft plans on a scratch
// context, at two cache lengths, to seed the latency model. Results are cached per model + device
// on disk ($CASSPEC_CACHE_DIR, else ~/.cache/casspec; 'off' disables) and in the process, so a
// model pays for calibration once; every later measured pass refines the model online.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { NativeModel } from '../native.js';
import { keptFractions, LatencyModel, type LatencyModelJSON, type PassShape } from './latency.js';

export interface CalibrationKind {
  skip?: Uint8Array;
  quant: number;
  /** Pass sizes to time (tokens); draft passes want one output row, verification all. */
  sizes: number[];
  allRows: boolean;
}

export interface CalibrationOptions {
  /** Cache lengths to time at (capped by the model's context). */
  contexts?: number[];
  /** Stop after this much wall time (ms); what was measured is kept. */
  budgetMs?: number;
  clock?: () => number;
}

export interface CalibrationReport {
  passes: number;
  ms: number;
  /** Quant modes the backend refused (their variants cannot run). */
  refusedQuant?: number[];
  source: 'measured' | 'disk' | 'process' | 'none';
  file?: string;
}

export function cacheDir(): string | undefined {
  const env = process.env.CASSPEC_CACHE_DIR;
  if (env === 'off' || env === '0') return undefined;
  return env && env.length > 0 ? env : join(homedir(), '.cache', 'casspec');
}

/** Key of a model on a device: hashes config-shaped facts and the backend's own description. */
export function modelKey(model: NativeModel, numLayers: number, vocabSize: number): string {
  const info = model.info();
  const h = createHash('sha256');
  h.update(JSON.stringify({ numLayers, vocabSize, backend: info.backend, device: info.device, weightBytes: info.weightBytes, quantBytes: info.quantBytes, kv: info.kvBytesPerSlot, v: 2 }));
  return h.digest('hex').slice(0, 16);
}

const processCache = new Map<string, LatencyModelJSON>();

export function loadCached(key: string): { model: LatencyModel; source: 'disk' | 'process'; file?: string } | undefined {
  const mem = processCache.get(key);
  if (mem) return { model: LatencyModel.fromJSON(mem), source: 'process' };
  const dir = cacheDir();
  if (!dir) return undefined;
  const file = join(dir, `latency-${key}.json`);
  try {
    const j = JSON.parse(readFileSync(file, 'utf8')) as LatencyModelJSON;
    const model = LatencyModel.fromJSON(j);
    if (!model.knows(0)) return undefined;
    processCache.set(key, j);
    return { model, source: 'disk', file };
  } catch {
    return undefined;
  }
}

export function storeCached(key: string, model: LatencyModel): string | undefined {
  const j = model.toJSON();
  processCache.set(key, j);
  const dir = cacheDir();
  if (!dir) return undefined;
  const file = join(dir, `latency-${key}.json`);
  try {
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(j));
    renameSync(tmp, file);
    return file;
  } catch {
    return undefined; // a read-only home is no reason to fail a generation
  }
}

/** Times passes of each kind on a scratch context and feeds them to `lm`. */
export async function calibrate(
  model: NativeModel,
  vocabSize: number,
  maxPositions: number,
  kinds: CalibrationKind[],
  lm: LatencyModel,
  opts: CalibrationOptions = {},
): Promise<CalibrationReport> {
  const clock = opts.clock ?? (() => performance.now());
  const t0 = clock();
  const budget = opts.budgetMs ?? 1500;
  const maxSize = Math.max(...kinds.flatMap((k) => k.sizes));
  const contexts = (opts.contexts ?? [32, 256]).map((c) => Math.max(1, Math.min(c, maxPositions - maxSize - 1)));
  const capacity = Math.max(...contexts) + maxSize + 1;
  const ctx = await model.createContext(capacity);
  let passes = 0;
  const refused = new Set<number>();
  try {
    const tokenAt = (i: number) => (i * 7919 + 13) % vocabSize;
    let filled = 0;
    outer: for (const c of [...new Set(contexts)].sort((a, b) => a - b)) {
      // Grow the committed prefix to c tokens with full-model passes (exact KV, commit allowed).
      while (filled < c) {
        const m = Math.min(64, c - filled);
        const slots = Int32Array.from({ length: m }, (_, i) => filled + i);
        const parents = Int32Array.from({ length: m }, (_, i) => (i === 0 ? -1 : filled + i - 1));
        await ctx.forward({ tokens: Int32Array.from(slots, tokenAt), slots, parents, outRows: Int32Array.of(m - 1) });
        await ctx.commit(slots);
        filled += m;
      }
      for (const kind of kinds) {
        const { fa, fm } = keptFractions(kind.skip);
        let warm = false;
        for (const n of kind.sizes) {
          if (clock() - t0 > budget) break outer;
          const slots = Int32Array.from({ length: n }, (_, i) => c + i);
          const parents = Int32Array.from({ length: n }, (_, i) => (i === 0 ? -1 : c + i - 1));
          const req = {
            tokens: Int32Array.from(slots, tokenAt),
            slots,
            parents,
            skip: kind.skip,
            quant: kind.quant,
            outRows: kind.allRows ? undefined : Int32Array.of(n - 1),
            topk: kind.allRows ? 0 : 4,
          };
          // Every shape is run once untimed first: the CUDA backend captures a graph per token
          // bucket and skip plan on first use, which costs several forwards' time and would
          // otherwise be fitted as the cost of that size.
          try {
            await ctx.forward(req);
          } catch (e) {
            if (!warm && kind.quant !== 0) {
              refused.add(kind.quant); // the backend lacks this quant mode: skip the kind
              break;
            }
            throw e;
          }
          await ctx.truncate(c);
          warm = true;
          const ts = clock();
          await ctx.forward(req);
          const ms = clock() - ts;
          await ctx.truncate(c);
          passes++;
          const shape: PassShape = { n, nOut: kind.allRows ? n : 1, ctx: c, fa, fm, quant: kind.quant };
          lm.observe(shape, ms);
        }
      }
    }
  } finally {
    ctx.dispose();
  }
  return { passes, ms: clock() - t0, source: 'measured', refusedQuant: [...refused] };
}
