// Draft variants ("DSIA" levels) of the one loaded model. A variant is data: a key, a layer-skip
// plan and an activation-quantization mode; any forward pass can switch to it. Prompt lookup (kind
// 'lookup') and token recycling (kind 'recycle', decode/recycle.ts) are variants too: they draft in
// TypeScript without a forward pass.
//
// Skip plans have 2 entries per layer, [attn0, mlp0, attn1, mlp1, ...] (native.ts); the first and
// the last layer are always kept.

export interface ModelVariant {
  kind: 'model';
  /** Stable name, used in statistics, acceptance tracking and latency models ('ls40', 'q1'...). */
  key: string;
  /** Sub-layers to skip (2 per layer); undefined = none. */
  skip?: Uint8Array;
  /** Backend-specific activation-quantization mode (0 = full precision). */
  quant: number;
  /** Target fraction of sub-layers skipped (for plan searches), if this is a layer-skip variant. */
  ratio?: number;
}

export interface LookupVariant {
  kind: 'lookup';
  key: string;
}

export interface RecycleVariant {
  kind: 'recycle';
  key: string;
}

export type DraftVariant = ModelVariant | LookupVariant | RecycleVariant;

/** Sub-layer indices a plan may skip: every sub-layer of layers 1 .. numLayers-2. */
export function skippableSubLayers(numLayers: number): number[] {
  const out: number[] = [];
  for (let j = 2; j < 2 * numLayers - 2; j++) out.push(j);
  return out;
}

/** How many sub-layers a ratio skips (of all 2 * numLayers), capped by what may be skipped. */
export function skipCount(numLayers: number, ratio: number): number {
  const eligible = Math.max(0, 2 * numLayers - 4);
  return Math.max(0, Math.min(eligible, Math.round(ratio * 2 * numLayers)));
}

/** A plan skipping `count` sub-layers spread evenly over the skippable ones (a search's start). */
export function evenSkipPlan(numLayers: number, count: number): Uint8Array {
  const plan = new Uint8Array(2 * numLayers);
  const eligible = skippableSubLayers(numLayers);
  const m = Math.min(count, eligible.length);
  for (let i = 0; i < m; i++) plan[eligible[Math.floor(((i + 0.5) * eligible.length) / m)]] = 1;
  return plan;
}

export function planFromIndices(numLayers: number, skipped: Iterable<number>): Uint8Array {
  const plan = new Uint8Array(2 * numLayers);
  for (const j of skipped) plan[j] = 1;
  return plan;
}

export function skippedIndices(plan: Uint8Array): number[] {
  const out: number[] = [];
  for (let j = 0; j < plan.length; j++) if (plan[j]) out.push(j);
  return out;
}

/** Compact text form: one letter per layer, '.' kept, 'a' attention skipped, 'm' MLP skipped, 'x' both. */
export function planString(plan: Uint8Array | undefined): string {
  if (!plan) return 'full';
  let s = '';
  for (let l = 0; l < plan.length / 2; l++) s += '.max'[(plan[2 * l] ? 2 : 0) + (plan[2 * l + 1] ? 1 : 0)];
  return s;
}

/** Fraction of sub-layers a plan runs (1 = full model). */
export function keptFraction(plan: Uint8Array | undefined): number {
  if (!plan) return 1;
  let kept = 0;
  for (let j = 0; j < plan.length; j++) if (!plan[j]) kept++;
  return kept / plan.length;
}

/** A layer-skip variant named after its ratio ('ls40' skips about 40% of sub-layers). */
export function layerSkipVariant(numLayers: number, ratio: number, key = `ls${Math.round(ratio * 100)}`): ModelVariant {
  return { kind: 'model', key, quant: 0, ratio, skip: evenSkipPlan(numLayers, skipCount(numLayers, ratio)) };
}

/** An activation-quantized variant (optionally combined with a skip plan). */
export function quantVariant(mode: number, skip?: Uint8Array, key = `q${mode}`): ModelVariant {
  return { kind: 'model', key, quant: mode, skip };
}

export const PROMPT_LOOKUP: LookupVariant = { kind: 'lookup', key: 'pld' };

export const TOKEN_RECYCLING: RecycleVariant = { kind: 'recycle', key: 'rec' };
