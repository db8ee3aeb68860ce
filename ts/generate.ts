// The generation loop shared by every strategy: prefill, then draft -> verify steps until eos,
// max tokens, the end of the context, or an abort. Streams text as tokens are accepted.
import { CasspecError } from './errors.js';
import type { NativeContext } from './native.js';
import { positionUniform } from './decode/rng.js';
import { targetDistribution, sampleFrom } from './decode/distribution.js';
import { Sequence } from './decode/sequence.js';
import type { Strategy } from './decode/strategy.js';
import { DraftTree } from './decode/tree.js';
import { verifyTree, type Sampler } from './decode/verify.js';

export interface GenerateChunk {
  /** Newly decoded text (may be empty while a UTF-8 character is incomplete). */
  text: string;
  /** Token ids accepted in this step. */
  tokens: number[];
}

export type FinishReason = 'eos' | 'length' | 'context';

export interface GenerationStats {
  strategy: string;
  promptTokens: number;
  generatedTokens: number;
  /** Prompt forward plus the first token, ms. */
  timeToFirstTokenMs: number;
  totalMs: number;
  /** generatedTokens / totalMs (prefill included, as Spec-Bench measures). */
  tokensPerSecond: number;
  /** Tokens per second after the first token. */
  decodeTokensPerSecond: number;
  /** Verification steps (full-model forwards after prefill). */
  steps: number;
  /** Tokens appended per verification step (accepted drafts + the bonus token). */
  meanAccepted: number;
  /** Native forward passes, drafts included. */
  forwards: number;
  draftMs: number;
  verifyMs: number;
  details?: Record<string, unknown>;
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  stats: GenerationStats;
}

export interface LoopInput {
  ctx: NativeContext;
  numLayers: number;
  prompt: number[];
  maxTokens: number;
  eos: Set<number>;
  temperature: number;
  topP: number;
  seed: number;
  strategy: Strategy;
  signal?: AbortSignal;
  decode: () => { push(id: number): string; flush(): string };
}

const now = () => performance.now();

export async function* generationLoop(input: LoopInput): AsyncGenerator<GenerateChunk, GenerationResult> {
  const { ctx, prompt, strategy, eos } = input;
  const seq = new Sequence(ctx, input.numLayers, input.signal);
  const sampler: Sampler | undefined =
    input.temperature > 0 ? { temperature: input.temperature, topP: input.topP, seed: input.seed } : undefined;
  const decoder = input.decode();
  const generated: number[] = [];
  let text = '';
  let draftMs = 0;
  let verifyMs = 0;
  let steps = 0;
  let appended = 0;
  let finish: FinishReason = 'length';

  const t0 = now();
  const first = await seq.prefill(prompt, { wantLogits: sampler !== undefined });
  const firstToken = sampler
    ? sampleFrom(targetDistribution(first.logits!, sampler), positionUniform(sampler.seed, prompt.length))
    : first.argmax[0];
  seq.tokens.push(firstToken);
  const tFirst = now();

  // Emits accepted tokens, stopping at eos or the token budget; returns false when generation ends.
  const emit = function* (tokens: number[]): Generator<GenerateChunk, boolean> {
    const kept: number[] = [];
    let more = true;
    for (const t of tokens) {
      if (eos.has(t)) {
        finish = 'eos';
        more = false;
        break;
      }
      kept.push(t);
      if (generated.length + kept.length >= input.maxTokens) {
        finish = 'length';
        more = false;
        break;
      }
    }
    generated.push(...kept);
    let piece = kept.map((t) => decoder.push(t)).join('');
    if (!more) piece += decoder.flush();
    text += piece;
    if (kept.length > 0 || piece) yield { text: piece, tokens: kept };
    return more;
  };

  let going = input.maxTokens > 0 ? yield* emit([firstToken]) : false;
  while (going) {
    seq.checkAborted();
    // Slots for the root and its drafts, keeping prompt + generated <= capacity: a step appends at
    // most tree.size tokens (accepted drafts + bonus) while committing at most tree.size slots.
    const room = ctx.capacity - 1 - seq.committed;
    if (room < 1) {
      finish = 'context';
      break;
    }
    const tree = new DraftTree(seq.pending);
    const budget = Math.min(input.maxTokens - generated.length, room - 1);
    const td = now();
    if (budget > 0) await strategy.draft(seq, tree, { temperature: input.temperature, budget });
    const tv = now();
    if (tree.size > room) throw new CasspecError('E_INTERNAL', `strategy ${strategy.name} drafted past the context`);
    const verdict = await verifyTree(seq, tree, sampler, strategy.verifyTopk ?? 0);
    const te = now();
    draftMs += tv - td;
    verifyMs += te - tv;
    steps++;
    appended += verdict.tokens.length;
    strategy.observe?.(tree, verdict, seq);
    going = yield* emit(verdict.tokens);
  }
  if (finish === 'context') text += decoder.flush();

  const tEnd = now();
  const totalMs = tEnd - t0;
  const stats: GenerationStats = {
    strategy: strategy.name,
    promptTokens: prompt.length,
    generatedTokens: generated.length,
    timeToFirstTokenMs: tFirst - t0,
    totalMs,
    tokensPerSecond: totalMs > 0 ? (generated.length * 1000) / totalMs : 0,
    decodeTokensPerSecond: tEnd > tFirst ? ((generated.length - 1) * 1000) / (tEnd - tFirst) : 0,
    steps,
    meanAccepted: steps > 0 ? appended / steps : 0,
    forwards: seq.forwards,
    draftMs,
    verifyMs,
    details: strategy.stats?.(),
  };
  return { text, tokens: generated, finishReason: finish, stats };
}
