// Benchmark prompts: JSONL files in casspec's format ({id, category, prompt}) or Spec-Bench's
// ({question_id, category, turns: [first, ...]}: the first turn is the prompt), and seeded
// token-id prompts for dummy-weight models (which have no tokenizer).
import { readFile } from 'node:fs/promises';
import { CasspecError } from '../errors.js';
import { Rng } from '../decode/rng.js';

export interface BenchPrompt {
  id: string;
  category: string;
  /** Text, or token ids (dummy models, or a JSONL `prompt` given as an id array). */
  prompt: string | number[];
}

/** The summary's name for "every prompt": no prompt category may use it. */
export const ALL_CATEGORIES = 'all';

/** Parses JSONL text; `source` names the file in errors ("prompts.jsonl:7: ..."). */
export function parsePromptsJsonl(text: string, source = '<prompts>'): BenchPrompt[] {
  const out: BenchPrompt[] = [];
  const seen = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i].replace(/\r$/, '');
    if (raw.trim() === '') continue;
    const fail = (msg: string): never => {
      throw new CasspecError('E_INVALID_ARG', `${source}:${lineNo}: ${msg}`);
    };
    let rec: unknown;
    try {
      rec = JSON.parse(raw);
    } catch (e) {
      fail(`not valid JSON (${(e as Error).message})`);
    }
    if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) fail('each line must be a JSON object');
    const o = rec as Record<string, unknown>;

    const idValue = o.id ?? o.question_id;
    if (idValue === undefined) fail('missing "id" (or Spec-Bench "question_id")');
    if (typeof idValue !== 'string' && typeof idValue !== 'number') fail('"id" must be a string or a number');
    const id = String(idValue);
    if (id === '') fail('"id" is empty');
    const dup = seen.get(id);
    if (dup !== undefined) fail(`duplicate id "${id}" (first on line ${dup})`);
    seen.set(id, lineNo);

    let category = 'default';
    if (o.category !== undefined) {
      if (typeof o.category !== 'string' || o.category === '') fail('"category" must be a non-empty string');
      category = o.category as string;
    }
    if (category === ALL_CATEGORIES) fail(`category "${ALL_CATEGORIES}" is reserved for the summary over every prompt`);

    let prompt: string | number[];
    if (o.prompt !== undefined) {
      if (typeof o.prompt === 'string') prompt = o.prompt;
      else if (Array.isArray(o.prompt) && o.prompt.every((t) => Number.isInteger(t) && t >= 0)) prompt = o.prompt as number[];
      else return fail('"prompt" must be a string (or an array of token ids)');
    } else if (o.turns !== undefined) {
      if (!Array.isArray(o.turns) || o.turns.length === 0 || typeof o.turns[0] !== 'string')
        fail('"turns" must be a non-empty array whose first element is a string');
      prompt = (o.turns as string[])[0];
    } else {
      return fail('missing "prompt" (or Spec-Bench "turns")');
    }
    if (prompt.length === 0) fail('the prompt is empty');
    out.push({ id, category, prompt });
  }
  if (out.length === 0) throw new CasspecError('E_INVALID_ARG', `${source}: no prompts (the file is empty)`);
  return out;
}

/** Reads and parses a JSONL prompts file. */
export async function loadPrompts(file: string): Promise<BenchPrompt[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new CasspecError('E_INVALID_ARG', `cannot read prompts file ${file}: ${(e as Error).message}`, { cause: e });
  }
  return parsePromptsJsonl(text, file);
}

export interface DummyPromptOptions {
  vocabSize: number;
  seed?: number;
  /** Prompt length range in tokens (default 64..256). */
  minTokens?: number;
  maxTokens?: number;
}

/**
 * Seeded token-id prompts for models without a tokenizer. The ids are code-like rather than
 * uniform: each prompt draws from a small per-prompt "lexicon" and repeats earlier spans now and
 * then, so n-gram drafters see the kind of repetition real source code has.
 */
export function dummyTokenIds(length: number, vocabSize: number, rng: Rng): number[] {
  const lexicon = Array.from({ length: Math.min(vocabSize, 96) }, () => Math.floor(rng.uniform() * vocabSize));
  const ids: number[] = [];
  while (ids.length < length) {
    if (ids.length >= 16 && rng.uniform() < 0.25) {
      const span = 4 + Math.floor(rng.uniform() * 12);
      const from = Math.floor(rng.uniform() * (ids.length - 4));
      for (let k = 0; k < span && ids.length < length && from + k < ids.length; k++) ids.push(ids[from + k]);
    } else {
      // Zipf-ish: low lexicon indices are much more frequent.
      const r = rng.uniform();
      ids.push(lexicon[Math.floor(r * r * lexicon.length)]);
    }
  }
  return ids;
}

/** `count` prompts of seeded token ids (categories short / medium / long by length). */
export function dummyPrompts(count: number, opts: DummyPromptOptions): BenchPrompt[] {
  const rng = new Rng(opts.seed ?? 0);
  const lo = opts.minTokens ?? 64;
  const hi = Math.max(lo, opts.maxTokens ?? 256);
  const out: BenchPrompt[] = [];
  for (let i = 0; i < count; i++) {
    const len = lo + Math.floor(rng.uniform() * (hi - lo + 1));
    const third = (hi - lo + 1) / 3;
    const category = len < lo + third ? 'short' : len < lo + 2 * third ? 'medium' : 'long';
    out.push({ id: `dummy-${String(i).padStart(3, '0')}`, category, prompt: dummyTokenIds(len, opts.vocabSize, rng) });
  }
  return out;
}

/**
 * Replaces text prompts by seeded token ids of about the same token count (text length / 4), for
 * a dummy model given a real prompts file: ids and categories stay, so tables line up.
 */
export function promptsAsDummyTokens(prompts: BenchPrompt[], opts: DummyPromptOptions): BenchPrompt[] {
  const rng = new Rng(opts.seed ?? 0);
  return prompts.map((p) => {
    if (typeof p.prompt !== 'string') return { ...p, prompt: p.prompt.map((t) => t % opts.vocabSize) };
    const len = Math.max(opts.minTokens ?? 8, Math.round(p.prompt.length / 4));
    return { ...p, prompt: dummyTokenIds(len, opts.vocabSize, rng) };
  });
}
